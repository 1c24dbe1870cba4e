import pytest

from .fakes import text_stream

pytestmark = pytest.mark.anyio


async def test_chat_stream_through_ollama_client(fake, ollama_client):
    fake.on("POST", "/chat/completions", text_stream("Hel", "lo"))
    parts = [
        p
        async for p in await ollama_client.chat(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    ]
    assert "".join(p.message.content for p in parts) == "Hello"
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == 7


async def test_tags_and_show(ollama_client):
    listing = await ollama_client.list()
    assert [m.model for m in listing.models] == ["gpt-test:latest", "text-embedding-test:latest"]
    shown = await ollama_client.show("gpt-test")
    assert "completion" in shown.capabilities
