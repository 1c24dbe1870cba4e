"""API keys made on the admin page, used from the official openai SDK and revoked there: a module
of its own, since a server with keys refuses the keyless requests the other modules make."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from .stack import ANSWER, Stack
from .test_admin import log_in


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=10)


def ask(stack: Stack, key: str) -> str | None:
    with sdk(stack, key) as client:
        answer = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content


def test_a_key_made_on_the_page_works_until_revoked(stack, page):
    log_in(page, stack)
    page.goto(stack.admin + "/keys")
    if page.locator("#no-key-store").count():
        pytest.skip("the admin page's Keys need the runtime key store (branch keys), not on this branch yet")
    name = f"browser-{uuid.uuid4().hex[:8]}"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Models").fill("gpt-*")
    with page.expect_navigation():
        page.get_by_role("button", name="Create key").click()

    created = page.locator("#created-key")
    assert name in created.get_by_role("heading").inner_text()
    key = page.locator("#new-key").inner_text().strip()
    assert len(key) >= 20, key
    assert ask(stack, key) == ANSWER

    page.goto(stack.admin + "/keys")  # shown once: never again
    assert key not in page.content()
    row = page.locator(f"tr[data-key='{name}']")
    assert row.get_attribute("data-state") == "active"
    assert "gpt-*" in row.inner_text()

    with page.expect_navigation():
        page.get_by_role("button", name=f"Revoke {name}").click()  # its confirmation is accepted
    assert page.locator(f"tr[data-key='{name}']").get_attribute("data-state") == "revoked"

    deadline = time.monotonic() + 5  # another process would learn of it within a poll; this one at once
    while True:
        try:
            ask(stack, key)
        except openai.AuthenticationError as refused:
            assert refused.status_code == 401
            break
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.2)
    with pytest.raises(openai.AuthenticationError):
        ask(stack, "sk-never-issued-" + uuid.uuid4().hex)
