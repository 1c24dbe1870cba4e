"""The HTTP surface under generated requests: whatever a client sends, every route answers, and
never with a 5xx of its own making.

Bodies come from hypothesis: arbitrary JSON, valid requests with fields replaced by anything,
random messages, and raw bytes. The app runs in-process in front of a fake upstream that always
answers well (text streams, completions, one embedding per input), so any 5xx, any "internal
error" line in a stream and any logged exception is a bug of ours.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fakes import FakeUpstream, completion, completions_stream, embeddings_response, sse, sse_response, text_stream

pytestmark = pytest.mark.anyio

# Examples per route; FUZZ_EXAMPLES=5000 for a deep run (with FUZZ_RANDOM=1 for new examples each run).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # The same examples every run: the suite must not fail by chance. Bugs a random run finds are
    # kept as explicit cases below.
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    database=None,
)

# Field names the routes read, so that generated objects reach past the first check.
KEYS = [
    "model", "messages", "role", "content", "images", "tool_calls", "function", "name", "arguments", "id",
    "tool_call_id", "tool_name", "thinking", "stream", "options", "temperature", "top_p", "num_predict",
    "stop", "seed", "top_k", "min_p", "repeat_penalty", "format", "think", "tools", "type", "parameters",
    "keep_alive", "prompt", "suffix", "system", "raw", "input", "truncate", "dimensions", "logprobs",
    "top_logprobs", "max_tokens", "text", "source", "media_type", "data", "tool_use_id", "is_error",
    "tool_choice", "stop_sequences", "metadata", "budget_tokens", "cache_control", "stream_options",
    "include_usage", "response_format", "input_schema", "description", "image_url", "url", "properties",
    "required", "signature", "index", "user_id", "top_p", "schema", "reasoning", "effort", "exclude",
    "exclude_reasoning", "enabled", "reasoning_effort", "num_ctx",
]  # fmt: skip
MODELS = ["gpt-test", "gpt-test:latest", "text-embedding-test", "GPT-TEST", "missing-model"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from([*MODELS, "user", "assistant", "tool", "system", "json", "high", "text", "image", "0"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner),
    max_leaves=6,
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` three times in four, anything else the fourth: deep enough to pass most checks."""
    return st.one_of(valid, valid, valid, json_values)


roles = mostly(st.sampled_from(["user", "assistant", "system", "tool", "developer", "USER"]))
arguments = mostly(st.dictionaries(st.text(max_size=4), scalars, max_size=2) | st.sampled_from(['{"a": 1}', "{", ""]))
tool_call = st.fixed_dictionaries(
    {
        "function": mostly(
            st.fixed_dictionaries({"name": mostly(st.text(max_size=8))}, optional={"arguments": arguments})
        )
    },
    optional={"id": mostly(st.text(max_size=8)), "type": st.just("function"), "index": st.integers(-1, 3)},
)
source = st.fixed_dictionaries(
    {"type": st.sampled_from(["base64", "url"])},
    optional={"media_type": st.just("image/png"), "data": st.text(max_size=8), "url": st.text(max_size=8)},
)
block = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document", "image_url"])},
    optional={
        "text": mostly(st.text(max_size=10)),
        "source": mostly(source),
        "id": st.text(max_size=6),
        "name": st.text(max_size=6),
        "input": json_values,
        "tool_use_id": mostly(st.text(max_size=6)),
        "content": mostly(st.text(max_size=6)),
        "thinking": st.text(max_size=6),
        "image_url": json_values,
        "is_error": json_values,
    },
)
message = st.fixed_dictionaries(
    {"role": roles},
    optional={
        "content": mostly(st.text(max_size=10) | st.lists(block, max_size=3)),
        "images": mostly(st.lists(st.sampled_from(["iVBORw0KGgo=", "not base64!", "data:image/png;base64,AA=="]))),
        "tool_calls": mostly(st.lists(tool_call, max_size=2)),
        "tool_call_id": mostly(st.text(max_size=6)),
        "tool_name": mostly(st.text(max_size=6)),
        "thinking": mostly(st.text(max_size=6)),
    },
)
tool = st.fixed_dictionaries(
    {},
    optional={
        "type": mostly(st.just("function")),
        "function": mostly(st.fixed_dictionaries({"name": st.text(max_size=6)}, optional={"parameters": json_values})),
        "name": st.text(max_size=6),
        "input_schema": json_values,
    },
)
overrides = st.dictionaries(
    st.sampled_from(KEYS),
    json_values
    | st.sampled_from(MODELS)
    | st.lists(message, max_size=3)
    | st.lists(tool, max_size=2)
    | st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4),
    max_size=4,
)

ASK = [{"role": "user", "content": "hi"}]
TEMPLATES: dict[str, dict[str, Any]] = {
    "/api/chat": {"model": "gpt-test", "messages": ASK},
    "/api/generate": {"model": "gpt-test", "prompt": "hi"},
    "/api/embed": {"model": "text-embedding-test", "input": ["a", "b"]},
    "/api/embeddings": {"model": "text-embedding-test", "prompt": "a"},
    "/v1/chat/completions": {"model": "gpt-test", "messages": ASK},
    "/chat/completions": {"model": "gpt-test", "messages": ASK},
    "/v1/completions": {"model": "gpt-test", "prompt": "hi"},
    "/v1/embeddings": {"model": "text-embedding-test", "input": "a"},
    "/v1/responses": {"model": "gpt-test", "input": "hi"},
    "/v1/messages": {"model": "gpt-test", "max_tokens": 16, "messages": ASK},
    "/v1/messages/count_tokens": {"model": "gpt-test", "messages": ASK},
    "/anthropic/v1/messages": {"model": "gpt-test", "max_tokens": 16, "messages": ASK},
    "/anthropic/v1/messages/count_tokens": {"model": "gpt-test", "messages": ASK},
}


@functools.cache  # one strategy per path: building one costs more than drawing from it
def body_strategy(path: str) -> st.SearchStrategy[bytes]:
    """Mostly requests that pass the first checks, so that the translators and the answer
    pipeline get fuzzed too; some arbitrary JSON, cut-off JSON and plain bytes."""
    template = TEMPLATES.get(path, {"model": "gpt-test"})
    near_valid = st.builds(lambda extra: {**template, **extra}, overrides)
    with_messages = st.builds(
        lambda messages, stream, extra: {**template, "messages": messages, "stream": stream, **extra},
        st.lists(message, min_size=1, max_size=3),
        st.booleans(),
        st.dictionaries(st.sampled_from(KEYS), json_values, max_size=2),
    )
    encode = json.dumps
    return st.one_of(
        *[near_valid.map(encode)] * 3,
        *[with_messages.map(encode)] * 3,
        json_values.map(encode),
        near_valid.map(encode).map(lambda text: text[: len(text) // 2]),
        st.binary(max_size=64),
    ).map(lambda body: body.encode() if isinstance(body, str) else body)


def answer_chat(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body.get("stream") is True:
        return sse_response(sse(*text_stream("Hel", "lo")))
    return httpx.Response(200, json=completion("Hello"))


def answer_completions(request: httpx.Request) -> httpx.Response:
    return sse_response(sse(*completions_stream("Hel", "lo")))


def answer_embeddings(request: httpx.Request) -> httpx.Response:
    inputs = json.loads(request.content).get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    return embeddings_response(*([[0.5, 0.25]] * count))


def answer_responses(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "resp_1", "object": "response", "output": []})


@pytest.fixture
def well_behaved(fake: FakeUpstream) -> FakeUpstream:
    fake.on("POST", "/chat/completions", answer_chat)
    fake.on("POST", "/completions", answer_completions)
    fake.on("POST", "/embeddings", answer_embeddings)
    fake.on("POST", "/responses", answer_responses)
    return fake


def routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled in; HEAD is left out (Starlette
    adds it beside GET). The admin page's routes answer HTML and are fuzzed in test_admin_fuzz.py."""
    found = set()
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        if hasattr(route, "original_router"):  # how FastAPI ≥ 0.120 keeps an included router
            pending += route.original_router.routes
        elif getattr(route, "methods", None) and not route.path.startswith("/admin"):
            path = route.path.replace("{digest}", "sha256-0").replace("{model:path}", "gpt-test")
            path = path.replace("{response_id}", "resp_0")
            found |= {(method, path) for method in route.methods if method != "HEAD"}
    return found


# What the app serves; `test_the_tables_follow_the_app` keeps this honest.
GETS = {
    "/",
    "/api/version",
    "/api/tags",
    "/api/ps",
    "/api/experimental/model-recommendations",
    "/v1/models",
    "/models",
    "/v1/models/gpt-test",
    "/v1/responses/resp_0",
    "/metrics",
}
POSTS = set(TEMPLATES) | {"/api/show", "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/blobs/sha256-0"}
SERVED = {("GET", path) for path in GETS} | {("POST", path) for path in POSTS} | {("DELETE", "/api/delete")}
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]


def check_answer(method: str, path: str, response: httpx.Response) -> None:
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    assert b"internal error" not in response.content, (method, path, response.text[:300])
    if response.status_code >= 400 and method != "HEAD":
        body = response.json()
        if path.startswith(("/v1/messages", "/anthropic/")):
            assert body["type"] == "error" and isinstance(body["error"]["message"], str), body
        elif path.startswith(("/v1/", "/chat/", "/models")):
            assert isinstance(body["error"]["message"], str), body
        else:
            assert isinstance(body["error"], str), body


def no_exceptions_logged(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("oai2ollama")]
    assert not logged, logged


async def test_the_tables_follow_the_app(app: Any) -> None:
    """A new route must be fuzzed: it fails here until it is in the tables above."""
    assert routes(app) == SERVED


posts = st.sampled_from(sorted(POSTS)).flatmap(lambda path: st.tuples(st.just(path), body_strategy(path)))


@settings(FUZZ, max_examples=EXAMPLES * len(POSTS))
@given(case=posts)
async def test_no_body_makes_a_route_fail_with_a_5xx(
    case: tuple[str, bytes], client: httpx.AsyncClient, well_behaved: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    path, body = case
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    check_answer("POST", path, response)
    no_exceptions_logged(caplog)


requests = st.tuples(st.sampled_from(METHODS), st.sampled_from(sorted(GETS | POSTS | {"/api/delete", "/nowhere"})))
requests = requests.flatmap(
    lambda request: st.tuples(
        st.just(request[0]), st.just(request[1]), body_strategy(request[1]) if request[0] != "HEAD" else st.just(b"")
    )
)


@FUZZ
@given(request=requests)
async def test_any_method_on_any_route_answers_in_its_dialect(
    request: tuple[str, str, bytes],
    client: httpx.AsyncClient,
    well_behaved: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    method, path, body = request
    response = await client.request(method, path, content=body)
    check_answer(method, path, response)
    no_exceptions_logged(caplog)


# Found by random runs; kept so that every run tries them.
FOUND = [
    pytest.param(
        "/v1/messages/count_tokens",
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "tools": 1.5},
        id="count_tokens-tools-not-a-list",
    ),
    pytest.param("/api/chat", {"model": "gpt-test", "messages": [{"role": "user", "images": 0}]}, id="images-zero"),
    pytest.param(
        "/v1/messages", {"model": "gpt-test", "max_tokens": 1, "messages": [], "tools": 1.5}, id="tools-float"
    ),
]


@pytest.mark.parametrize(("path", "body"), FOUND)
async def test_requests_that_once_failed(
    path: str,
    body: dict[str, Any],
    client: httpx.AsyncClient,
    well_behaved: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = await client.post(path, json=body)
    check_answer("POST", path, response)
    no_exceptions_logged(caplog)
