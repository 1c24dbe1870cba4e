"""A fake OpenAI-compatible upstream that speaks the real wire format.

Answers are built from the same pieces real servers send: SSE frames with `data:` lines,
role-only first chunks, tool-call deltas split across chunks, a usage-only last chunk,
`[DONE]`, and OpenAI error bodies. The upstream runs in-process behind `httpx.MockTransport`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE_URL = "http://upstream.test/v1"
API_KEY = "sk-test-secret-0123456789"

Responder = Callable[[httpx.Request], httpx.Response]


def sse(*chunks: dict[str, Any] | str, done: bool = True) -> bytes:
    frames = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    if done:
        frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(prompt: int = 11, completion: int = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def text_stream(*parts: str, finish: str = "stop", reasoning: Iterable[str] = (), field: str = "reasoning_content"):
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({field: r}) for r in reasoning]
    chunks += [chunk({"content": p}) for p in parts]
    chunks += [chunk({}, finish), usage_chunk()]
    return chunks


def tool_stream(*calls: tuple[str, str, dict[str, Any]], pieces: int = 3) -> list[dict[str, Any]]:
    """Tool calls as real servers stream them: id and name first, arguments in fragments."""
    chunks = [chunk({"role": "assistant", "content": None})]
    for index, (call_id, name, arguments) in enumerate(calls):
        text = json.dumps(arguments)
        size = max(1, len(text) // pieces + 1)
        head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head]}))
        for start in range(0, len(text), size):
            fragment = {"index": index, "function": {"arguments": text[start : start + size]}}
            chunks.append(chunk({"tool_calls": [fragment]}))
    chunks += [chunk({}, "tool_calls"), usage_chunk()]
    return chunks


def completion(content: str = "Hello!", *, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content, **message}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def openai_error(status: int, message: str, kind: str = "invalid_request_error", **headers: str) -> httpx.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return httpx.Response(status, json=body, headers=headers)


def model_not_there(request: httpx.Request) -> httpx.Response:
    """What OpenAI answers for a model it does not serve."""
    model = json.loads(request.content).get("model")
    return openai_error(404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found")


def sse_response(body: bytes | AsyncIterator[bytes], status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})


async def dribble(*parts: bytes, error: Exception | None = None) -> AsyncIterator[bytes]:
    """A body sent in the given pieces, optionally dying after them."""
    for part in parts:
        yield part
    if error is not None:
        raise error


DEFAULT_MODELS = [
    {"id": "gpt-test", "object": "model", "created": 1700000000, "owned_by": "test"},
    {"id": "text-embedding-test", "object": "model", "created": 1700000000, "owned_by": "test"},
]


@dataclass
class FakeUpstream:
    """Routes keyed by (method, path below /v1); every request is recorded for assertions."""

    models: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_MODELS))
    routes: dict[tuple[str, str], Responder] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, answer: Responder | httpx.Response | list[dict[str, Any]]) -> None:
        """Answer with a response, a responder, or a list of chunks sent as SSE."""
        if isinstance(answer, list):
            chunks = answer
            answer = lambda request: sse_response(sse(*chunks))  # noqa: E731
        elif isinstance(answer, httpx.Response):
            response = answer
            answer = lambda request: response  # noqa: E731
        self.routes[(method, path)] = answer

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == "/v1" + path]

    @property
    def last_body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v1")
        responder = self.routes.get((request.method, path))
        if responder is not None:
            return responder(request)
        if (request.method, path) == ("GET", "/models"):
            return httpx.Response(200, json={"object": "list", "data": self.models})
        return openai_error(404, f"no route {request.method} {path}", "not_found_error")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released), for connection-refused tests."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env_names() -> set[str]:
    """Every environment variable name a `Settings` field answers to, upper-cased."""
    from oai2ollama.config import Settings

    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        names.add(name.upper())
        alias = info.validation_alias
        for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            names.add(str(choice).upper())
    return names


def isolate_settings(monkeypatch: Any, directory: Any) -> None:
    """Settings read the environment and `./.env`: start from neither (the machine may set OPENAI_*)."""
    import os

    names = settings_env_names()
    for var in list(os.environ):
        if var.upper() in names:
            monkeypatch.delenv(var)
    monkeypatch.chdir(directory)


async def asgi_messages(app: Any, method: str, path: str, body: bytes = b"") -> AsyncIterator[dict[str, Any]]:
    """Call an ASGI app directly and yield each message it sends, the moment it sends it.

    httpx's ASGITransport only returns once the app has finished; this shows what a real server
    would put on the wire, and when.
    """
    import asyncio

    sent: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects on its own
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await sent.put(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:11434"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 11434),
    }

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            await sent.put(None)

    task = asyncio.create_task(run())
    try:
        while (message := await sent.get()) is not None:
            yield message
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


from pathlib import Path  # noqa: E402  (appended builders keep the module's head untouched)

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript_models(name: str) -> list[dict[str, Any]]:
    """The `data` entries of a recorded /models answer, `tests/transcripts/models_<name>.json`."""
    return json.loads((TRANSCRIPTS / f"models_{name}.json").read_text())["data"]


def hosts_transport(fakes: dict[str, FakeUpstream]) -> httpx.MockTransport:
    """One transport for several fake upstreams, chosen by the request's host (`http://<host>/v1`).

    A host with no fake refuses the connection, as a server that is down does.
    """

    async def handler(request: httpx.Request) -> httpx.Response:
        fake = fakes.get(request.url.host)
        if fake is None:
            raise httpx.ConnectError(f"[Errno 111] Connection refused: {request.url.host}")
        answer: Any = fake.handler(request)
        # A responder may be a coroutine function, to answer slowly.
        return await answer if not isinstance(answer, httpx.Response) else answer

    return httpx.MockTransport(handler)


# ---------------------------------------------------------------- native API builders


def completions_stream(*parts: str, finish: str = "stop") -> list[dict[str, Any]]:
    """Legacy /completions chunks (fill-in-the-middle, raw prompts): text in `choices[].text`."""
    head = {"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "gpt-test"}
    chunks = [{**head, "choices": [{"index": 0, "text": p, "logprobs": None, "finish_reason": None}]} for p in parts]
    chunks.append({**head, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": finish}]})
    chunks.append(usage_chunk())
    return chunks


def embeddings_response(*vectors: list[float], order: Iterable[int] | None = None, prompt_tokens: int = 5):
    """An OpenAI /embeddings answer; `order` lists the data entries out of input order, as some servers do."""
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    if order is not None:
        data = [data[i] for i in order]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return httpx.Response(200, json={"object": "list", "data": data, "model": "text-embedding-test", "usage": usage})


def transcript(name: str) -> bytes:
    """A recorded upstream body, `tests/transcripts/<name>`, byte for byte."""
    return (TRANSCRIPTS / name).read_bytes()


# ---------------------------------------------------------------- chunk builders for the translators


def call_chunk(index: int | None, call_id: str = "", name: str = "", arguments: str | None = None) -> dict[str, Any]:
    """One tool-call fragment in a chunk, carrying only the fields given (as later fragments do)."""
    fragment: dict[str, Any] = {"function": {}}
    if index is not None:
        fragment["index"] = index
    if call_id:
        fragment.update(id=call_id, type="function")
    if name:
        fragment["function"]["name"] = name
    if arguments is not None:
        fragment["function"]["arguments"] = arguments
    return chunk({"tool_calls": [fragment]})


def logprobs_chunk(content: str, *entries: dict[str, Any]) -> dict[str, Any]:
    """A content chunk with the chat logprobs of its tokens."""
    answer = chunk({"content": content})
    answer["choices"][0]["logprobs"] = {"content": list(entries), "refusal": None}
    return answer


def ndjson(body: bytes) -> list[dict[str, Any]]:
    """NDJSON lines as a client reads them; every line, the last included, must end with LF."""
    assert body.endswith(b"\n"), body[-80:]
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


def joined_lines(lines: list[dict[str, Any]], kind: str = "chat") -> dict[str, Any]:
    """What a client makes of streamed native lines: texts, thinking, tool calls and logprobs joined
    in order, the rest from the `done` line. Written apart from the proxy's own joining, to check it."""
    parts = [line["message"] for line in lines] if kind == "chat" else lines
    text_key = "content" if kind == "chat" else "response"
    said: dict[str, Any] = {text_key: "".join(part[text_key] for part in parts)}
    if thinking := "".join(part.get("thinking", "") for part in parts):
        said["thinking"] = thinking
    if calls := [call for part in parts for call in part.get("tool_calls", ())]:
        said["tool_calls"] = calls
    if kind == "chat":
        said = {"message": {"role": "assistant", **said}}
    if logprobs := [entry for line in lines for entry in line.get("logprobs", ())]:
        said["logprobs"] = logprobs
    final = {k: v for k, v in lines[-1].items() if k not in ("message", "response", "thinking", "tool_calls")}
    return {**final, **said}
