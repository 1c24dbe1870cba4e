"""The admin page in a real browser (headless Chromium), against the whole server on loopback:
what a person does with it, and what it must never do (run a model's name as a script)."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import ollama

from ..fakes import API_KEY
from .stack import HOSTILE_MODEL, Stack

NAV = ["Overview", "Models", "Keys", "Usage", "Settings"]


# Under `Referrer-Policy: no-referrer` Chromium sends `Origin: null` with every form it posts (the
# Fetch standard's rule for that policy), which the admin page's same-origin check refuses.
ORIGIN_NULL = "origin 'null' may not use the admin page"


def log_in(page: Any, stack: Stack, token: str | None = None) -> None:
    page.goto(stack.admin)
    page.get_by_label("Admin token").fill(token or stack.admin_token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    refused_as_null(page)


def refused_as_null(page: Any) -> None:
    """Chromium sends `Origin: null` with a page's forms under `Referrer-Policy: no-referrer`, which
    the same-origin check refuses: the page's policy must not be that."""
    assert ORIGIN_NULL not in page.locator("body").inner_text()


def eventually(page: Any, url: str, ready: Callable[[], bool], seconds: float = 10) -> None:
    """Load `url` until `ready()` holds: the ledger writes its rows off the request path, a batch
    a second at most."""
    deadline = time.monotonic() + seconds
    while True:
        page.goto(url)
        if ready():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never showed what was expected")
        time.sleep(0.25)


def ledger_count(stack: Stack, model: str) -> int:
    with sqlite3.connect(stack.ledger) as db:
        return int(db.execute("SELECT count(*) FROM requests WHERE model = ?", (model,)).fetchone()[0])


def overview_requests(page: Any, window: str) -> int:
    return int(page.locator(f"#window-{window}").get_attribute("data-requests"))


def chat(stack: Stack, model: str) -> str:
    """One /api/chat through the official ollama client; the answer's text."""
    client = ollama.Client(host=stack.url)
    try:
        answer = client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=False)
    finally:
        client.close()
    return str(answer.message.content)


def no_injected_script(page: Any) -> None:
    """Every script on the page is the package's own file: none inline, none from elsewhere."""
    sources = page.eval_on_selector_all("script", "nodes => nodes.map(n => n.getAttribute('src'))")
    assert sources, "the page has no script at all (expected its own /admin/static one)"
    assert all(src and src.startswith("/admin/static/") for src in sources), sources


# ---- signing in


def test_the_admin_page_asks_for_the_token_first(stack, page):
    page.goto(stack.admin + "/usage")
    assert "/admin/login" in page.url
    assert page.get_by_role("navigation", name="Admin pages").count() == 0
    assert page.get_by_label("Admin token").get_attribute("type") == "password"


def test_a_wrong_token_is_refused(stack, page):
    log_in(page, stack, token="not-the-admin-token-0000")
    assert "/admin/login" in page.url
    assert page.get_by_role("alert").is_visible()
    assert page.get_by_role("navigation", name="Admin pages").count() == 0
    assert not [c for c in page.context.cookies() if c["httpOnly"] and "session" in c["name"].lower()]


def test_the_token_opens_every_page(stack, page):
    log_in(page, stack)
    nav = page.get_by_role("navigation", name="Admin pages")
    assert nav.is_visible()
    assert [link.inner_text().strip() for link in nav.get_by_role("link").all()] == NAV
    session = [c for c in page.context.cookies() if c["httpOnly"]]
    assert session and all(c["sameSite"] == "Strict" for c in session), page.context.cookies()
    for name in NAV:
        nav.get_by_role("link", name=name).click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text().strip() == name
        assert nav.get_by_role("link", name=name).get_attribute("aria-current") == "page"


def test_signing_out_ends_the_session(stack, page):
    log_in(page, stack)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    page.goto(stack.admin + "/settings")
    assert "/admin/login" in page.url


def test_opening_the_admin_page_records_nothing_in_the_usage_log(stack, page):
    page.goto(stack.admin + "/login")
    page.wait_for_load_state("networkidle")
    time.sleep(1.5)  # the ledger writes a batch a second at most
    with sqlite3.connect(stack.ledger) as db:
        browser_rows = db.execute("SELECT method, route, status FROM requests WHERE client LIKE 'Mozilla/%'").fetchall()
    assert browser_rows == []


# ---- the keyboard


def test_the_login_form_is_reachable_with_tab(stack, page):
    page.goto(stack.admin + "/login")
    assert page.evaluate("document.activeElement.id") == "token"  # autofocus: type at once
    reached = []
    for _ in range(12):  # a whole round of the page's focusable elements, and then some
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert "Skip to content" in reached and "token" in reached and "login-submit" in reached, reached
    assert reached[reached.index("token") + 1] == "login-submit", reached
    while page.evaluate("document.activeElement.id") != "token":
        page.keyboard.press("Tab")
    page.keyboard.type(stack.admin_token)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    refused_as_null(page)
    assert page.get_by_role("navigation", name="Admin pages").is_visible()


def test_the_navigation_is_reachable_with_tab(stack, page):
    log_in(page, stack)
    reached: list[str] = []
    for _ in range(15):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        if reached[-1] == "Settings":
            break
    assert [name for name in reached if name in NAV] == NAV, reached
    page.keyboard.press("Enter")  # follows the focused link
    page.wait_for_url(re.compile(r"/admin/settings$"))


# ---- what was just asked shows up


def test_a_request_just_made_shows_in_the_usage_log_and_the_overview(stack, page):
    log_in(page, stack)
    page.goto(stack.admin)
    before = {window: overview_requests(page, window) for window in ("hour", "day", "week")}
    model = f"browser-check-{uuid.uuid4().hex[:8]}"  # the fake answers any name; this one is ours alone
    assert chat(stack, model) == "Hello from the fake upstream"

    eventually(page, stack.admin + "/usage", lambda: page.get_by_role("cell", name=model).count() > 0)
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=model))
    assert row.count() == 1
    text = row.inner_text()
    assert "/api/chat" in text and "200" in text and "ollama-python" in text, text
    assert ledger_count(stack, model) == 1

    # The overview's figures are kept 2 s (a reload reads the ledger once): wait them out.
    def counted() -> bool:
        after = {window: overview_requests(page, window) for window in before}
        return all(after[window] >= before[window] + 1 for window in before)

    eventually(page, stack.admin, counted)


def test_the_usage_filters_find_a_request(stack, page):
    model = f"browser-filter-{uuid.uuid4().hex[:8]}"
    chat(stack, model)
    chat(stack, "gpt-test")
    log_in(page, stack)
    eventually(page, stack.admin + "/usage", lambda: page.get_by_role("cell", name=model).count() > 0)
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("Status", exact=True).select_option("2xx")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    rows = page.locator("#request-log tbody tr")
    assert rows.count() == 1, page.locator("#request-log").inner_text()
    assert model in rows.first.inner_text()
    assert page.get_by_label("Model", exact=True).input_value() == model  # the filter stays in the form
    csv_link = page.get_by_role("link", name="Export CSV").get_attribute("href")
    assert model in httpx.QueryParams(csv_link.split("?", 1)[1]).get("model", ""), csv_link


def test_the_ok_status_filter_shows_the_answered_requests(stack, page):
    chat(stack, "gpt-test")
    log_in(page, stack)
    page.goto(stack.admin + "/usage")
    page.get_by_label("Status", exact=True).select_option("ok")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Filter").click()
    assert navigation.value.status == 200
    statuses = page.locator("#request-log tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses and all(status == "200" for status in statuses), statuses


def test_a_suggested_model_finds_its_requests(stack, page):
    chat(stack, "gpt-test:latest")  # as Ollama clients name it, from /api/tags
    log_in(page, stack)
    eventually(page, stack.admin + "/usage", lambda: page.get_by_role("cell", name="gpt-test:latest").count() > 0)
    offered = page.locator("#known-models option").evaluate_all("options => options.map(o => o.value)")
    suggestion = next(name for name in offered if name.startswith("gpt-test"))
    page.get_by_label("Model", exact=True).fill(suggestion)
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert page.locator("#request-log tbody tr").count() >= 1, (offered, suggestion)


# ---- models


def tags(stack: Stack) -> list[str]:
    return [model["name"] for model in httpx.get(stack.url + "/api/tags", timeout=10).json()["models"]]


def open_model(page: Any, stack: Stack, name: str) -> None:
    page.goto(stack.admin + "/models")
    page.get_by_role("link", name=f"Edit {name}").click()
    page.wait_for_load_state()


def test_an_alias_edited_on_the_models_page_is_listed_by_api_tags(stack, page):
    log_in(page, stack)
    assert "gpt-test:latest" in tags(stack)
    open_model(page, stack, "gpt-test:latest")
    page.get_by_label(re.compile("^Alias")).fill("team-model")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    try:
        names = tags(stack)
        assert "team-model:latest" in names or "team-model" in names, names
        row = page.locator("#models tr", has=page.get_by_role("cell", name="team-model"))
        page.goto(stack.admin + "/models")
        assert row.count() == 1
        assert chat(stack, "team-model") == "Hello from the fake upstream"
    finally:
        page.goto(stack.admin + "/models")
        edit = page.get_by_role("link", name=re.compile(r"^Edit team-model"))
        if edit.count():
            edit.first.click()
            page.wait_for_load_state()
            page.get_by_role("button", name=re.compile("^Reset")).click()
            page.wait_for_load_state()
    assert "gpt-test:latest" in tags(stack)


# ---- markup in names is text


def test_a_model_named_like_a_script_is_shown_as_text(stack, page):
    log_in(page, stack)
    page.goto(stack.admin + "/models")
    name_cells = page.locator("#models th.name")
    names = [cell.inner_text().strip() for cell in name_cells.all()]
    assert any(HOSTILE_MODEL in name for name in names), names
    no_injected_script(page)
    assert page.evaluate("document.body.innerHTML").count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 1
    assert page.alerts == []


def test_a_script_named_model_in_the_usage_log_is_shown_as_text(stack, page):
    client = ollama.Client(host=stack.url)
    try:
        client.chat(model=HOSTILE_MODEL, messages=[{"role": "user", "content": "hi"}], stream=False)
    except ollama.ResponseError:
        pass  # refused or not, the request is in the ledger under that name
    finally:
        client.close()
    log_in(page, stack)
    eventually(page, stack.admin + "/usage", lambda: page.get_by_text(HOSTILE_MODEL, exact=False).count() > 0)
    no_injected_script(page)
    assert page.alerts == []


# ---- settings


def test_the_settings_page_masks_secrets(stack, page):
    log_in(page, stack)
    page.goto(stack.admin + "/settings")
    text = page.locator("main").inner_text()
    html = page.content()
    assert stack.admin_token not in html and API_KEY not in html
    assert "base_url" in text or "Base URL" in text or stack.upstream_url in text, text[:500]
