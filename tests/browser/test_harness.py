"""The harness itself: Chromium reaches the real server, and the server answers through the fake
upstream over loopback and writes its SQLite ledger file."""

from __future__ import annotations

import sqlite3
import time

import ollama

from .stack import ANSWER, HOSTILE_MODEL


def ledger_rows(stack, route: str) -> int:
    with sqlite3.connect(stack.ledger) as db:
        return db.execute("SELECT count(*) FROM requests WHERE route = ?", (route,)).fetchone()[0]


def test_chromium_opens_the_server(stack, page):
    page.goto(stack.url + "/")
    assert page.locator("body").inner_text().strip() == "Ollama is running"
    assert "Chrome/" in page.evaluate("navigator.userAgent")


def test_the_server_answers_through_the_upstream_and_records_it(stack):
    client = ollama.Client(host=stack.url)
    try:
        names = [model.model for model in client.list().models]
        answer = client.chat(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=False)
    finally:
        client.close()
    assert "gpt-test:latest" in names
    assert any(HOSTILE_MODEL in (name or "") for name in names)
    assert answer.message.content == ANSWER
    deadline = time.monotonic() + 10
    while ledger_rows(stack, "/api/chat") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger_rows(stack, "/api/chat") == 1
