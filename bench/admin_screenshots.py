"""The README's screenshots of the admin page, taken in headless Chromium (Debian's, driven by
Playwright as in tests/browser) against the whole server on loopback with a generated ledger.

    .venv/bin/pip install pillow          # to make the PNGs small (not needed by the tests)
    .venv/bin/python bench/admin_screenshots.py [--out docs/admin] [--rows 60000]

One PNG per page (login, overview, models, keys, usage, settings) in the light theme at 1280×800,
the overview at a phone's width (390 wide), and the usage page in the dark theme; each reduced to
a 256-colour palette and optimised, to stay well under 150 KB.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from admin_pages import MODELS, generate  # noqa: E402

from tests.browser.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.browser.stack import Stack, running_stack  # noqa: E402

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def session_cookies(stack: Stack) -> list[dict[str, Any]]:
    """Sign in over HTTP (as the browser would) and hand the session cookie to the browser."""
    with httpx.Client(base_url=stack.url, headers={"origin": stack.url}) as client:
        form = client.get("/admin/login")
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = client.post("/admin/login", data={"csrf": csrf, "next": "/admin", "token": stack.admin_token})
        if answer.status_code != 303:
            raise RuntimeError(f"sign-in failed: {answer.status_code}")
        cookies = [(name, value) for name, value in client.cookies.items()]
    return [{"name": name, "value": value, "url": stack.url + "/admin"} for name, value in cookies]


def make_key(stack: Stack, cookies: list[dict[str, Any]]) -> None:
    """A few runtime keys, so the Keys page shows some (where this build has the key store)."""
    with httpx.Client(base_url=stack.url, headers={"origin": stack.url}) as client:
        for cookie in cookies:
            client.cookies.set(cookie["name"], cookie["value"], path="/admin")
        page = client.get("/admin/keys").text
        if 'id="key-create-form"' not in page:
            return
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        for name, models in (("alice-laptop", "gpt-4o*"), ("ci", ""), ("webui", "qwen*, llama*")):
            client.post("/admin/keys", data={"csrf": csrf, "name": name, "models": models})


def small_png(raw: bytes, path: Path) -> int:
    try:
        from PIL import Image
    except ImportError:
        path.write_bytes(raw)
        return len(raw)
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "admin")
    parser.add_argument("--rows", type=int, default=60_000, help="requests in the generated ledger")
    options = parser.parse_args()
    chromium = chromium_path()
    if chromium is None:
        raise SystemExit("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    options.out.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="oai2ollama-shots-"))
    generate(directory / "ledger.db", options.rows)
    model_ids = [upstream_id for _, _, upstream_id, _, _ in MODELS]
    with running_stack(directory, model_ids=model_ids) as stack, sync_playwright() as playwright:
        cookies = session_cookies(stack)
        make_key(stack, cookies)
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        shots = [
            ("login", "/admin/login", LAPTOP, "light", False),
            ("overview", "/admin", LAPTOP, "light", True),
            ("models", "/admin/models", LAPTOP, "light", True),
            ("keys", "/admin/keys", LAPTOP, "light", True),
            ("usage", "/admin/usage", LAPTOP, "light", True),
            ("settings", "/admin/settings", LAPTOP, "light", True),
            ("overview-phone", "/admin", PHONE, "light", True),
            ("usage-dark", "/admin/usage", LAPTOP, "dark", True),
        ]
        for name, path, viewport, scheme, signed_in in shots:
            context = browser.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=1)
            if signed_in:
                context.add_cookies(cookies)
            page = context.new_page()
            page.goto(stack.url + path)
            page.wait_for_load_state("networkidle")
            size = small_png(page.screenshot(), options.out / f"{name}.png")
            print(f"{options.out / f'{name}.png'}: {size / 1024:.0f} KiB")
            context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
