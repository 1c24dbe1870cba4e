"""Every route's request schema, fuzzed field by field.

`test_fuzz.py` throws arbitrary JSON and bytes at the routes. This module speaks each route's
schema: it starts from requests that use every field the API defines (Ollama's `api/types.go`,
OpenAI's chat/completions/embeddings/responses parameters, Anthropic's Messages parameters; the
SDKs' own type definitions keep the lists complete, see `test_the_exemplars_cover_the_sdks`) and
replaces fields, at any depth, with hostile values: wrong types, huge values, deep nesting,
invalid UTF-8, lone surrogates, NaN and Infinity, duplicate keys, empty objects, nulls. Bodies
are written as bytes, so that what `json.dumps` cannot write is sent too.

Every answer must: not be a 5xx of ours (502/504 only while the fake upstream was told to fail),
leave no exception or traceback in the log, carry an error body in its route's dialect, be strict
JSON where we wrote it, and come within a few seconds; every body we send upstream must be strict
JSON. A sweep gives every field of every route a turn with each kind of hostile value; hypothesis
then combines up to three mutations per request.

Default run: the sweep and FUZZ_EXAMPLES (40) generated examples per route, the same ones every
run (about 30 s). Deep run, new examples each time: `FUZZ_SWEEP=all FUZZ_EXAMPLES=500 FUZZ_RANDOM=1
.venv/bin/python -m pytest tests/test_fuzz_schemas.py` (FUZZ_REPORT=1 and -s print the counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.errors import dialect as app_dialect
from oai2ollama.translate.generate_context import Conversation
from oai2ollama.translate.generate_context import encode as encode_context
from oai2ollama.upstream import Upstreams

from .conftest import PROXY_URL
from .fakes import (
    API_KEY,
    BASE_URL,
    FakeUpstream,
    completion,
    completions_stream,
    embeddings_response,
    openai_error,
    sse,
    sse_response,
    text_stream,
)
from .loopback import serve

pytestmark = pytest.mark.anyio

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # The same examples every run: the suite must not fail by chance. What random runs find is
    # kept as an explicit case in FOUND.
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    database=None,
)
# A request that takes longer has a complexity bug (a backtracking regex, a quadratic loop).
ANSWER_WITHIN = 5.0

# ---------------------------------------------------------------- exemplars: the schemas, by example

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
SCHEMA = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC"]}}, "required": ["zone"]}

# Ollama's Options (api/types.go): runner options and sampling options alike.
OLLAMA_OPTIONS = {
    "num_keep": 4, "seed": 42, "num_predict": 16, "top_k": 40, "top_p": 0.9, "min_p": 0.05,
    "typical_p": 1.0, "repeat_last_n": 64, "temperature": 0.7, "repeat_penalty": 1.1,
    "presence_penalty": 0.0, "frequency_penalty": 0.0, "stop": ["\n\n"], "num_ctx": 2048,
    "num_batch": 512, "num_gpu": 1, "main_gpu": 0, "use_mmap": True, "num_thread": 4,
    "penalize_newline": True, "mirostat": 0, "mirostat_eta": 0.1, "mirostat_tau": 5.0, "tfs_z": 1.0,
    "numa": False, "low_vram": False, "f16_kv": True, "logits_all": False, "vocab_only": False,
    "use_mlock": False, "embedding_only": False,
}  # fmt: skip
OLLAMA_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "the time", "parameters": SCHEMA},
}
OLLAMA_MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what time is it?", "images": [PNG]},
    {
        "role": "assistant",
        "content": "",
        "thinking": "a tool knows",
        "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "get_time", "arguments": {"zone": "UTC"}}}],
    },
    {"role": "tool", "content": "12:00", "tool_name": "get_time", "tool_call_id": "call_1"},
]
OLLAMA_CHAT = {
    "model": "gpt-test", "messages": OLLAMA_MESSAGES, "tools": [OLLAMA_TOOL], "format": SCHEMA,
    "options": OLLAMA_OPTIONS, "stream": False, "keep_alive": "5m", "think": True, "truncate": True,
    "shift": True, "logprobs": True, "top_logprobs": 2, "_debug_render_only": False,
}  # fmt: skip
# A context this server returned (a compressed conversation); any other is refused.
CONTEXT = encode_context(Conversation("be brief", (("hi", "Hello"),)))
OLLAMA_GENERATE = {
    "model": "gpt-test", "prompt": "hi", "system": "be brief", "template": "{{ .Prompt }}",
    "context": CONTEXT, "images": [PNG], "format": "json", "options": OLLAMA_OPTIONS, "stream": False,
    "keep_alive": 300, "think": "high", "truncate": True, "shift": True, "logprobs": True,
    "top_logprobs": 2, "width": 512, "height": 512, "steps": 4, "_debug_render_only": False,
}  # fmt: skip
OLLAMA_FILL_IN = {"model": "gpt-test", "prompt": "def f(", "suffix": "    return 1", "raw": True, "stream": True}
OLLAMA_LOAD = {"model": "gpt-test", "messages": [], "keep_alive": "0"}

OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "the time", "parameters": SCHEMA, "strict": False},
}
OPENAI_MESSAGES = [
    {"role": "developer", "content": "be brief", "name": "dev"},
    {"role": "system", "content": [{"type": "text", "text": "really brief"}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what time is it?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"}},
        ],
        "name": "me",
    },
    {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "audio": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    {"role": "function", "name": "get_time", "content": "12:00"},
]
OPENAI_CHAT = {
    "model": "gpt-test", "messages": OPENAI_MESSAGES, "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.0, "function_call": "auto", "functions": [{"name": "get_time", "parameters": SCHEMA}],
    "logit_bias": {"50256": -100}, "logprobs": True, "max_completion_tokens": 16, "max_tokens": 16,
    "metadata": {"k": "v"}, "modalities": ["text"], "moderation": None, "n": 1, "parallel_tool_calls": True,
    "prediction": {"type": "content", "content": "12:00"}, "presence_penalty": 0.0,
    "prompt_cache_key": "k", "prompt_cache_options": {}, "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA, "strict": True}},
    "safety_identifier": "u1", "seed": 1, "service_tier": "auto", "stop": ["\n\n"], "store": False,
    "stream": False, "stream_options": {"include_usage": True}, "temperature": 1.0, "tool_choice": "auto",
    "tools": [OPENAI_TOOL], "top_logprobs": 2, "top_p": 1.0, "user": "u1", "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}  # fmt: skip
OPENAI_COMPLETIONS = {
    "model": "gpt-test", "prompt": "def f(", "best_of": 1, "echo": False, "frequency_penalty": 0.0,
    "logit_bias": {"50256": -100}, "logprobs": 1, "max_tokens": 16, "n": 1, "presence_penalty": 0.0,
    "seed": 1, "stop": "\n\n", "stream": True, "stream_options": {"include_usage": True},
    "suffix": "    return 1", "temperature": 1.0, "top_p": 1.0, "user": "u1",
}  # fmt: skip
OPENAI_EMBEDDINGS = {
    "model": "text-embedding-test", "input": ["a", "b"], "dimensions": 2, "encoding_format": "float", "user": "u1",
}  # fmt: skip
RESPONSES_INPUT = [
    {"type": "message", "role": "developer", "content": "be brief"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "what time is it?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"},
        ],
    },
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "a tool knows"}],
        "content": [{"type": "reasoning_text", "text": "a tool knows the time"}],
        "encrypted_content": None,
    },
    {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": '{"zone": "UTC"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "12:00"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is noon."}]},
    {"role": "user", "content": "thanks"},
]
RESPONSES = {
    "model": "gpt-test", "input": RESPONSES_INPUT, "access_programs": {}, "background": False,
    "background_options": {}, "context_management": None, "conversation": None, "image": {},
    "include": ["reasoning.encrypted_content"], "instructions": "be brief", "max_output_tokens": 64,
    "max_tool_calls": 4, "metadata": {"k": "v"}, "moderation": None, "parallel_tool_calls": True,
    "previous_response_id": None, "prompt": None, "prompt_cache_key": "k", "prompt_cache_options": {},
    "prompt_cache_retention": "24h", "reasoning": {"effort": "low", "summary": "auto"},
    "safety_identifier": "u1", "service_tier": "auto", "store": True, "stream": False,
    "stream_options": {"include_obfuscation": False}, "temperature": 1.0,
    "text": {"format": {"type": "json_schema", "name": "t", "schema": SCHEMA, "strict": True}, "verbosity": "low"},
    "tool_choice": {"type": "function", "name": "get_time"},
    "tools": [{"type": "function", "name": "get_time", "description": "now", "parameters": SCHEMA, "strict": True}],
    "top_logprobs": 2, "top_p": 1.0, "truncation": "disabled", "user": "u1",
}  # fmt: skip
ANTHROPIC_MESSAGES = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what time is it?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}, "title": "t"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AAAA"}},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "a tool knows", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {"zone": "UTC"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [
                    {"type": "text", "text": "12:00"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
                "is_error": False,
            },
            {"type": "text", "text": "thanks"},
        ],
    },
]
ANTHROPIC_TOOL = {
    "name": "get_time", "description": "the time", "input_schema": SCHEMA, "type": "custom",
    "cache_control": {"type": "ephemeral"},
}  # fmt: skip
ANTHROPIC_COMMON = {
    "model": "gpt-test", "messages": ANTHROPIC_MESSAGES, "cache_control": {"type": "ephemeral"},
    "output_config": {"effort": "high"}, "speed": "standard",
    "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}, "tools": [ANTHROPIC_TOOL],
    "user_profile_id": "p1", "workspace_id": "w1",
}  # fmt: skip
ANTHROPIC = {
    **ANTHROPIC_COMMON, "max_tokens": 64, "container": None, "diagnostics": None, "inference_geo": "us",
    "metadata": {"user_id": "u1"}, "service_tier": "auto", "stop_sequences": ["\n\n"], "stream": False,
    "temperature": 1.0, "top_k": 40, "top_p": 1.0,
}  # fmt: skip
ANTHROPIC_SIMPLE = {"model": "gpt-test", "max_tokens": 16, "system": "be brief", "messages": "hi", "stream": True}
ANTHROPIC_SIMPLE["messages"] = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Route:
    """A route, its requests by example (each valid and answered 200 as it stands), the fields
    a request cannot do without, and the dialect its errors are in."""

    method: str
    path: str
    exemplars: tuple[dict[str, Any], ...]
    required: frozenset[str] = frozenset({"model"})
    dialect: str = "ollama"
    relayed: bool = False  # the upstream's answer is passed on as sent
    setup: str = "well-behaved"  # "no-responses": the upstream lacks /responses, so it is translated
    answers: int = 200  # what the exemplars get: management routes refuse every request

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (" (translated)" if self.setup == "no-responses" else "")

    def __repr__(self) -> str:
        return self.name


ROUTES = [
    Route("POST", "/api/chat", (OLLAMA_CHAT, {**OLLAMA_CHAT, "stream": True}, OLLAMA_LOAD)),
    Route("POST", "/api/generate", (OLLAMA_GENERATE, OLLAMA_FILL_IN, {"model": "gpt-test", "keep_alive": "0s"})),
    Route(
        "POST",
        "/api/embed",
        (
            {
                "model": "text-embedding-test",
                "input": ["a", "b"],
                "truncate": True,
                "dimensions": 2,
                "keep_alive": "5m",
                "options": {"num_ctx": 512},
            },
        ),
    ),
    Route(
        "POST",
        "/api/embeddings",
        ({"model": "text-embedding-test", "prompt": "a", "keep_alive": "5m", "options": {"num_ctx": 512}},),
    ),
    Route(
        "POST",
        "/api/show",
        ({"model": "gpt-test", "verbose": True, "system": "s", "template": "t", "options": {}, "name": "gpt-test"},),
    ),
    Route(
        "POST",
        "/api/pull",
        (
            {"model": "gpt-test", "insecure": False, "stream": False, "username": "u", "password": "p"},
            {"name": "gpt-test", "stream": True},
        ),
        required=frozenset(),
    ),
    Route(
        "POST",
        "/api/push",
        ({"model": "gpt-test", "insecure": False, "stream": False},),
        required=frozenset(),
        answers=400,
    ),
    Route(
        "POST",
        "/api/create",
        (
            {
                "model": "mine",
                "from": "gpt-test",
                "files": {"a.gguf": "sha256:00"},
                "adapters": {},
                "template": "t",
                "license": "MIT",
                "system": "s",
                "parameters": {"temperature": 0.5},
                "messages": OLLAMA_MESSAGES[:2],
                "quantize": "q4_K_M",
                "stream": False,
            },
        ),
        required=frozenset(),
        answers=400,
    ),
    Route("POST", "/api/copy", ({"source": "gpt-test", "destination": "mine"},), required=frozenset(), answers=400),
    Route("DELETE", "/api/delete", ({"model": "gpt-test"},), required=frozenset(), answers=400),
    Route(
        "POST", "/v1/chat/completions", (OPENAI_CHAT, {**OPENAI_CHAT, "stream": True}), dialect="openai", relayed=True
    ),
    Route("POST", "/chat/completions", (OPENAI_CHAT,), dialect="openai", relayed=True),
    Route("POST", "/v1/completions", (OPENAI_COMPLETIONS,), dialect="openai", relayed=True),
    Route("POST", "/v1/embeddings", (OPENAI_EMBEDDINGS,), dialect="openai", relayed=True),
    Route("POST", "/v1/responses", (RESPONSES,), dialect="openai", relayed=True),
    Route(
        "POST",
        "/v1/responses",
        (RESPONSES, {**RESPONSES, "stream": True, "store": False}, {"model": "gpt-test", "input": "hi"}),
        dialect="openai",
        setup="no-responses",
    ),
    Route(
        "POST",
        "/v1/messages",
        (ANTHROPIC, {**ANTHROPIC, "stream": True}, ANTHROPIC_SIMPLE),
        required=frozenset({"model", "max_tokens", "messages"}),
        dialect="anthropic",
    ),
    Route(
        "POST",
        "/v1/messages/count_tokens",
        (ANTHROPIC_COMMON,),
        required=frozenset({"model", "messages"}),
        dialect="anthropic",
    ),
    # The same routes under the prefix some clients put before Anthropic's paths.
    Route(
        "POST",
        "/anthropic/v1/messages",
        (ANTHROPIC, ANTHROPIC_SIMPLE),
        required=frozenset({"model", "max_tokens", "messages"}),
        dialect="anthropic",
    ),
    Route(
        "POST",
        "/anthropic/v1/messages/count_tokens",
        (ANTHROPIC_COMMON,),
        required=frozenset({"model", "messages"}),
        dialect="anthropic",
    ),
]
# Routes that take no JSON body: fuzzed through their path parameter, their query and a body
# they should not read.
PATH_ROUTES = [("GET", "/v1/models/"), ("GET", "/v1/responses/"), ("POST", "/api/blobs/"), ("HEAD", "/api/blobs/")]
FIELDLESS = [
    ("GET", path)
    for path in (
        "/", "/api/version", "/api/tags", "/api/ps", "/v1/models", "/models", "/metrics",
        "/api/experimental/model-recommendations",
    )
]  # fmt: skip
PATH_VALUES = [
    "a" * 60_000, "%ff%fe", "%ed%a0%80", "%c0%af", "%00", "%0d%0aX-Injected:%201", "..%2F..%2Fetc%2Fpasswd",
    "gpt-test/../../api/tags", "%F0%9F%98%80", "NaN", "Infinity", "%25", "%", "gpt-test:latest", "GPT-TEST", "%20",
    ":", "gpt-test:", "@", "resp_" + "0" * 10_000, "sha256-" + "f" * 10_000, "sha256:0", "~", "'", '"', "{}",
]  # fmt: skip


def sdk_fields() -> dict[str, set[str]]:
    """Each route's request fields as the official SDKs define them: ollama-python's models (the
    mirror of api/types.go), the OpenAI and Anthropic SDKs' parameter TypedDicts. Nested places
    are named `messages[]` (each message) and `options`."""
    import ollama._types as ollama_types
    from anthropic.types import message_count_tokens_params, message_create_params
    from openai.types import completion_create_params, embedding_create_params
    from openai.types.chat import completion_create_params as chat_params
    from openai.types.responses import response_create_params

    def model(cls: Any) -> set[str]:
        return {name.rstrip("_") for name in cls.model_fields}  # `from_` is sent as `from`

    def typed(cls: Any) -> set[str]:
        return {name for klass in cls.__mro__ for name in getattr(klass, "__annotations__", {})}

    message, options = model(ollama_types.Message), model(ollama_types.Options)
    chat = typed(chat_params.CompletionCreateParamsBase) | {"stream"}
    responses = typed(response_create_params.ResponseCreateParamsBase) | {"stream"}
    return {
        "POST /api/chat": model(ollama_types.ChatRequest)
        | {f"messages[].{f}" for f in message}
        | {f"options.{f}" for f in options},
        "POST /api/generate": model(ollama_types.GenerateRequest) | {f"options.{f}" for f in options},
        "POST /api/embed": model(ollama_types.EmbedRequest),
        "POST /api/embeddings": model(ollama_types.EmbeddingsRequest),
        "POST /api/show": model(ollama_types.ShowRequest),
        "POST /api/pull": model(ollama_types.PullRequest),
        "POST /api/push": model(ollama_types.PushRequest),
        "POST /api/create": model(ollama_types.CreateRequest),
        "POST /api/copy": model(ollama_types.CopyRequest),
        "DELETE /api/delete": model(ollama_types.DeleteRequest),
        "POST /v1/chat/completions": chat,
        "POST /chat/completions": chat,
        "POST /v1/completions": typed(completion_create_params.CompletionCreateParamsBase) | {"stream"},
        "POST /v1/embeddings": typed(embedding_create_params.EmbeddingCreateParams),
        "POST /v1/responses": responses,
        "POST /v1/responses (translated)": responses,
        "POST /v1/messages": typed(message_create_params.MessageCreateParamsBase) | {"stream"},
        "POST /v1/messages/count_tokens": typed(message_count_tokens_params.MessageCountTokensParams),
        "POST /anthropic/v1/messages": typed(message_create_params.MessageCreateParamsBase) | {"stream"},
        "POST /anthropic/v1/messages/count_tokens": typed(message_count_tokens_params.MessageCountTokensParams),
    }


def exemplar_fields(route: Route) -> set[str]:
    fields: set[str] = set()
    for exemplar in route.exemplars:
        fields |= set(exemplar)
        for message in exemplar.get("messages") or ():
            fields |= {f"messages[].{name}" for name in message}
        fields |= {f"options.{name}" for name in exemplar.get("options") or ()}
    return fields


def routes_of(app: Any) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves."""
    found, pending = set(), list(app.routes)
    while pending:
        route = pending.pop()
        if hasattr(route, "original_router"):  # how FastAPI keeps an included router
            pending += route.original_router.routes
        elif getattr(route, "methods", None):
            found |= {(method, route.path) for method in route.methods}
    return found


async def test_every_route_is_fuzzed(app: Any) -> None:
    """A new route fails here until it is in ROUTES, PATH_ROUTES or FIELDLESS (the admin page's HTML
    routes are fuzzed in test_admin_fuzz.py)."""
    fuzzed = {(route.method, route.path) for route in ROUTES} | set(FIELDLESS)
    fuzzed |= {(method, prefix + "{}") for method, prefix in PATH_ROUTES}
    served = {(method, re.sub(r"\{[^}]*\}", "{}", path)) for method, path in routes_of(app) if method != "HEAD"}
    served = {(method, path) for method, path in served if not path.startswith("/admin")}  # test_admin_fuzz.py
    assert served <= fuzzed, sorted(served - fuzzed)


def test_the_exemplars_cover_the_sdks() -> None:
    """Every field an SDK can send is in some exemplar of its route, so that it gets fuzzed; a
    field a new SDK release adds fails here until it is added above."""
    wanted = sdk_fields()
    assert set(wanted) == {route.name for route in ROUTES}
    missing = {route.name: sorted(wanted[route.name] - exemplar_fields(route)) for route in ROUTES}
    assert not any(missing.values()), {name: fields for name, fields in missing.items() if fields}


# ---------------------------------------------------------------- hostile values, as JSON text


class Raw(bytes):
    """JSON text (or not quite JSON) written into a body as it is."""


class Pairs(list[tuple[str, Any]]):
    """An object written as these pairs, in order: a key may come twice."""


def nested(depth: int, opening: bytes, closing: bytes, leaf: bytes = b"1") -> Raw:
    return Raw(opening * depth + leaf + closing * depth)


LONG = 1 << 20  # characters: far beyond anything a field needs, well below the body limit

HOSTILE: dict[str, list[Raw]] = {
    "wrong type": [
        Raw(v) for v in b'true false 0 -1 0.5 -0.0 "" "x" "gpt-test" "0" "true" [1] ["a",1] {"a":1} [[]] [{}]'.split()
    ]
    + [Raw(b'{"type": "text"}')],
    "null or empty": [Raw(b"null"), Raw(b"[]"), Raw(b"{}"), Raw(b"[null]"), Raw(b'{"": null}'), Raw(b'""')],
    "long strings": [
        Raw(json.dumps("a" * LONG).encode()),
        Raw(json.dumps("é€😀" * (LONG // 32), ensure_ascii=False).encode()),
        Raw(b'"' + b"\\n\\u0000" * (LONG // 32) + b'"'),
        Raw(json.dumps("data:" * 50_000 + ";base64,").encode()),
    ],
    "huge": [
        Raw(b"1.7976931348623157e308"),
        Raw(b"-1e308"),
        Raw(b"5e-324"),
        Raw(str(2**70).encode()),
        Raw(str(-(2**70)).encode()),
        Raw(str(2**64).encode()),
        Raw(b"9" * 4000),  # an integer just below Python's limit on digits converted
        Raw(b"1" + b"0" * 400 + b".5"),
        Raw(b"[" + b",".join([b"0"] * 100_000) + b"]"),
        Raw(b"[" + b",".join([b'"a"'] * 100_000) + b"]"),
        Raw(b"[" + b",".join([b'{"role": "user", "content": "hi", "type": "text", "text": "hi"}'] * 10_000) + b"]"),
        Raw(b"{" + b",".join(b'"k%d": %d' % (n, n) for n in range(10_000)) + b"}"),
    ],
    "deep": [
        nested(10_000, b"[", b"]"),
        nested(10_000, b'{"a": ', b"}"),
        nested(5_000, b'[{"type": "text", "content": ', b"}]", b'"x"'),
        nested(150, b"[", b"]"),  # below the parser's limit: reaches our own code
        nested(150, b'{"type": "object", "properties": {"a": ', b"}}", b"{}"),
        nested(
            100, b'{"type": "tool_result", "tool_use_id": "t", "content": [', b"]}", b'{"type": "text", "text": "x"}'
        ),
    ],
    "invalid UTF-8": [
        Raw(b'"\xff"'),
        Raw(b'"caf\xc3"'),
        Raw(b'"\xc0\xaf"'),
        Raw(b'"\xed\xa0\x80"'),  # a surrogate, encoded
        Raw(b'"\xf4\x90\x80\x80"'),  # beyond U+10FFFF
        Raw(b"\xfe\xff"),
        Raw(b'"\x00"'),  # a raw control character
    ],
    "surrogates and odd escapes": [
        Raw(b'"\\ud800"'),
        Raw(b'"\\udfff"'),
        Raw(b'"a\\ud800b"'),
        Raw(b'"\\ud800\\ud800"'),
        Raw(b'"\\udc00\\ud800"'),
        Raw(b'"\\ud83d\\ude00"'),
        Raw(b'"\\u0000"'),
        Raw(b'"\\u2028\\u2029\\u0085"'),
        Raw(b'"\\x41"'),
    ],
    "not JSON numbers": [
        Raw(b"NaN"),
        Raw(b"Infinity"),
        Raw(b"-Infinity"),
        Raw(b"1e400"),
        Raw(b"-1e400"),
        Raw(b"[NaN, Infinity]"),
        Raw(b'{"a": -Infinity}'),
        Raw(b"0x10"),
        Raw(b"+1"),
        Raw(b".5"),
        Raw(b"01"),
    ],
}
KINDS = list(HOSTILE)
# Every string field of the sweep gets each of these: what makes a regex backtrack or a loop go
# quadratic is a long run of one character with a tail that does not fit.
RUNS = [Raw(json.dumps(run).encode()) for run in ("0" * 20_000 + "!", " " * 20_000 + "x", "a:" * 10_000 + "\x00")]
ALL_HOSTILE = [value for values in HOSTILE.values() for value in values]

# Generated values besides: JSON of any shape, any text, and long repetitions of a short piece
# (which is how inputs that make a regex or a loop go slow look).
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
repeated = st.builds(
    lambda piece, times, tail: piece * times + tail,
    st.text(min_size=1, max_size=3),
    st.integers(8, 50_000),
    st.text(max_size=2),
)
hostile_values = st.one_of(
    st.sampled_from(ALL_HOSTILE),
    st.sampled_from(ALL_HOSTILE),
    json_values,
    repeated,
    st.text(),
)

# ---------------------------------------------------------------- bodies


def encode(value: Any) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, Pairs):
        return b"{" + b", ".join(encode(key) + b": " + encode(item) for key, item in value) + b"}"
    if isinstance(value, dict):
        return encode(Pairs(value.items()))
    if isinstance(value, list):
        return b"[" + b", ".join(encode(item) for item in value) + b"]"
    return json.dumps(value, ensure_ascii=False).encode()


Path = tuple[str | int, ...]


def paths(value: Any, here: Path = ()) -> Iterator[Path]:
    """Every place in a document a value can be put: each field and element, at any depth."""
    if isinstance(value, Raw | Pairs):
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*here, key)
        yield from paths(item, (*here, key))


def value_at(doc: Any, path: Path) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def mutate(doc: Any, path: Path, how: str, value: Any) -> Any:
    """`doc` with the field at `path` replaced by `value`, removed, written twice (first or last
    as `value`), or given a sibling field holding `value`."""
    if not path:
        return value
    doc = copy.copy(doc)
    *parents, last = path
    if parents:
        doc[parents[0]] = mutate(doc[parents[0]], (*parents[1:], last), how, value)
        return doc
    if how == "replace":
        doc[last] = value
    elif how == "remove":
        del doc[last]
    elif how == "extra" and isinstance(doc, dict):
        doc["x-" + str(last)] = value
    elif how in ("duplicate-first", "duplicate-last") and isinstance(doc, dict):
        pairs = []
        for key, item in doc.items():
            if key == last:
                twice = [(key, value), (key, item)]
                pairs += twice if how == "duplicate-first" else twice[::-1]
            else:
                pairs.append((key, item))
        return Pairs(pairs)
    else:  # extra or duplicate in a list: one more element
        doc.insert(last, value)
    return doc


@dataclass(frozen=True)
class Case:
    route: Route
    body: bytes
    upstream: str  # how the fake upstream behaves: "well" or a way to fail
    what: str  # the mutations, for the failure message

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"...(%d bytes)" % len(self.body)
        return f"Case({self.route.name!r}, {body!r}, upstream={self.upstream!r}, what={self.what!r})"


FAILURES = ["error-400", "error-503", "refused", "garbage", "cut"]
HOWS = ["replace"] * 5 + ["remove", "extra", "duplicate-first", "duplicate-last"]


@st.composite
def cases(draw: st.DrawFn, route: Route) -> Case:
    doc: Any = copy.deepcopy(draw(st.sampled_from(route.exemplars)))
    optional = sorted(set(doc) - route.required)
    kept = set(draw(st.lists(st.sampled_from(optional), unique=True))) if optional else set()
    doc = {key: value for key, value in doc.items() if key in route.required or key in kept}
    if "stream" in doc:
        doc["stream"] = draw(st.booleans())
    done = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from([(), *paths(doc)]))
        how = draw(st.sampled_from(HOWS)) if where else "replace"
        value = draw(hostile_values)
        doc = mutate(doc, where, how, value)
        done.append(f"{how} {'.'.join(map(str, where)) or 'body'} = {encode(value)[:60]!r}")
    upstream = draw(st.sampled_from(["well"] * 7 + FAILURES))
    return Case(route, encode(doc), upstream, "; ".join(done))


# ---------------------------------------------------------------- the fake upstream and the checks


@dataclass
class Upstream:
    """The fake upstream's behaviour for the request at hand, and what it saw."""

    failing: str = "well"
    invalid: list[str] = field(default_factory=list)

    def answer(self, request: httpx.Request) -> httpx.Response:
        try:
            body = strict_json(request.content)
        except ValueError as exc:
            self.invalid.append(f"{request.url.path}: {exc}: {request.content[:200]!r}")
            return openai_error(400, "We could not parse the JSON body of your request.")
        if self.failing == "error-400":
            return openai_error(400, "the upstream refuses this request")
        if self.failing == "error-503":
            return openai_error(503, "the upstream is overloaded", "server_error")
        if self.failing == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if self.failing == "garbage":
            return httpx.Response(200, content=b"<html>\xff oops", headers={"content-type": "text/html"})
        path = request.url.path.removeprefix("/v1")
        if self.failing == "cut":
            return sse_response(b'data: {"id": "chatcmpl-1", "choices": [{"delta": {"content": "Hel')
        if path == "/embeddings":
            inputs = body.get("input") if isinstance(body, dict) else None
            count = len(inputs) if isinstance(inputs, list) else 1
            return embeddings_response(*([[0.5, 0.25]] * count))
        if path == "/completions":
            return sse_response(sse(*completions_stream("Hel", "lo")))
        if path == "/responses":
            return httpx.Response(200, json={"id": "resp_1", "object": "response", "status": "completed", "output": []})
        if isinstance(body, dict) and body.get("stream") is True:
            return sse_response(sse(*text_stream("Hel", "lo")))
        return httpx.Response(200, json=completion("Hello"))


def strict_json(data: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def check_body(dialect: str, response: httpx.Response, *, ours: bool) -> None:
    """Errors in the route's dialect; what we wrote strict JSON (NDJSON lines, SSE data lines)."""
    status = response.status_code
    if status >= 400:
        body = strict_json(response.content)
        if dialect == "anthropic":
            assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
            assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["type"], str), body
        elif dialect == "openai":
            assert set(body["error"]) >= {"message", "type", "param", "code"}, body
            assert isinstance(body["error"]["message"], str), body
        else:
            assert set(body) == {"error"} and isinstance(body["error"], str), body
        return
    if not ours or not response.content:
        return
    kind = response.headers.get("content-type", "")
    if "event-stream" in kind:
        lines = [line[5:] for line in response.content.split(b"\n") if line.startswith(b"data:")]
        for line in lines:
            if line.strip() != b"[DONE]":
                strict_json(line)
    elif "ndjson" in kind:
        for line in response.content.splitlines():
            strict_json(line)
    elif "json" in kind:
        strict_json(response.content)
    assert b"internal error" not in response.content, response.text[:300]


class TookTooLong(BaseException):
    """Raised by the watchdog; a BaseException, so that no handler of the app turns it into an answer."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Interrupt whatever runs, even a regex in C, after `seconds` (SIGALRM; pytest runs tests in
    the main thread)."""

    def expire(signum: int, frame: Any) -> None:
        raise TookTooLong(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def problems_logged(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR or r.exc_info or r.stack_info]


class Proxy:
    """The app in process, in front of a fake upstream whose behaviour each request sets."""

    def __init__(self, setup: str, client: httpx.AsyncClient, upstream: Upstream, fake: FakeUpstream):
        self.setup, self.client, self.upstream, self.fake = setup, client, upstream, fake

    async def send(self, case: Case, caplog: pytest.LogCaptureFixture) -> httpx.Response:
        route = case.route
        self.upstream.failing = case.upstream
        self.upstream.invalid.clear()
        caplog.clear()
        started = time.perf_counter()
        try:
            with watchdog(ANSWER_WITHIN):
                response = await self.client.request(
                    route.method, route.path, content=case.body, headers={"content-type": "application/json"}
                )
        except TookTooLong:
            pytest.fail(f"{route.name}: no answer within {ANSWER_WITHIN} s to {case.what}")
        check_answer(case, response, time.perf_counter() - started)
        sent = self.upstream.invalid
        assert not sent, f"{route.name}: sent upstream what is not JSON, for {case.what}: {sent[0][:300]}"
        logged = problems_logged(caplog.records)
        assert not logged, f"{route.name}: logged, for {case.what}: {logged[0][:300]}"
        return response


def check_answer(case: Case, response: httpx.Response, elapsed: float) -> None:
    route, status = case.route, response.status_code
    context = f"{route.name[:100]} answered {status} to {case.what} (upstream: {case.upstream}): {response.text[:300]}"
    # The upstream's own 503 is passed on (with its message); 502 and 504 say that it failed.
    allowed = set() if case.upstream == "well" else {502, 504} | ({503} if case.upstream == "error-503" else set())
    assert status < 500 or status in allowed, context
    if route.method == "HEAD":
        return
    try:
        check_body(route.dialect, response, ours=case.upstream == "well")
    except (AssertionError, ValueError, KeyError, TypeError) as exc:
        raise AssertionError(f"{context}: {type(exc).__name__}: {str(exc)[:300]}") from None


async def make_proxy(setup: str, upstream: Upstream) -> tuple[Proxy, Callable[[], Any]]:
    fake = FakeUpstream()
    for path in ("/chat/completions", "/completions", "/embeddings"):
        fake.on("POST", path, upstream.answer)
    if setup == "no-responses":
        fake.on("POST", "/responses", lambda request: openai_error(404, "Not Found", "not_found_error"))
    else:
        fake.on("POST", "/responses", upstream.answer)
    upstreams = Upstreams(transport=fake.transport())
    app = create_app(
        Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, models_ttl=600.0),  # type: ignore[call-arg]
        upstreams=upstreams,
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL, timeout=30)

    async def close() -> None:
        await client.aclose()
        await upstreams.aclose()

    return Proxy(setup, client, upstream, fake), close


# ---------------------------------------------------------------- the tests

RAN: Counter[str] = Counter()  # requests sent per route


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """FUZZ_REPORT=1 (with -s): the requests each route was sent, as a table for the README."""
    yield
    if os.environ.get("FUZZ_REPORT"):
        print("\n| route | requests |\n|---|---|")
        for name, count in sorted(RAN.items()):
            print(f"| `{name}` | {count:,} |")
        print(f"| all | {sum(RAN.values()):,} |")


EACH_ROUTE = pytest.mark.parametrize(
    ("route", "proxy"), [(r, r) for r in ROUTES], ids=[r.name for r in ROUTES], indirect=["proxy"]
)


@pytest.fixture
async def proxy(request: pytest.FixtureRequest) -> Any:
    route: Route = request.param
    upstream = Upstream()
    made, close = await make_proxy(route.setup, upstream)
    yield made
    await close()


@EACH_ROUTE
async def test_each_exemplar_is_answered(route: Route, proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    """The starting points are valid requests: otherwise every mutation would stop at the same
    first check, and the fuzzing below would test nothing."""
    for exemplar in route.exemplars:
        response = await proxy.send(Case(route, encode(exemplar), "well", "exemplar"), caplog)
        assert response.status_code == route.answers, (route.name, response.text[:300])


# Hostile kinds each field gets in the sweep, in turn; FUZZ_SWEEP=all: every hostile value on every field.
SWEEP_ALL = os.environ.get("FUZZ_SWEEP") == "all"
KINDS_PER_FIELD = 3


def sweep(route: Route) -> Iterator[Case]:
    """Every field of the route's exemplars gets values of several hostile kinds (the kinds taking
    turns, so that neighbouring fields get different ones), and every hostile value is tried on
    the route at least once (as its model name)."""
    counter = 0
    seen: set[tuple[Path, type]] = set()
    for number, exemplar in enumerate(route.exemplars):
        for where in [(), *paths(exemplar)]:
            # The same field with a value of the same type in another exemplar: once is enough.
            if (where, type(value_at(exemplar, where))) in seen:
                continue
            seen.add((where, type(value_at(exemplar, where))))
            if SWEEP_ALL:
                chosen = ALL_HOSTILE
            else:
                kinds = [KINDS[(counter + n) % len(KINDS)] for n in range(KINDS_PER_FIELD)]
                chosen = [HOSTILE[kind][counter % len(HOSTILE[kind])] for kind in kinds]
                if isinstance(value_at(exemplar, where), str):
                    chosen += RUNS
            counter += 1
            for value in chosen:
                what = f"exemplar {number}: replace {'.'.join(map(str, where)) or 'body'} with {value[:40]!r}"
                yield Case(route, encode(mutate(exemplar, where, "replace", value)), "well", what)
    for value in ALL_HOSTILE:
        yield Case(route, encode({**route.exemplars[0], "model": value}), "well", f"model = {value[:40]!r}")


@EACH_ROUTE
async def test_every_field_with_every_kind_of_hostile_value(
    route: Route, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    failures = []
    for case in sweep(route):
        try:
            await proxy.send(case, caplog)
        except AssertionError as exc:  # every failure of the route, not only the first
            failures.append(str(exc).splitlines()[0][:400])
        RAN[route.name] += 1
    assert not failures, f"{len(failures)} failures, the first: " + "\n".join(failures[:5])


@pytest.fixture
async def proxies() -> Any:
    """One proxy per route setup, made when first needed, all closed at the end."""
    made: dict[str, Proxy] = {}
    closers = []

    async def get(setup: str) -> Proxy:
        if setup not in made:
            made[setup], close = await make_proxy(setup, Upstream())
            closers.append(close)
        return made[setup]

    yield get
    for close in closers:
        await close()


@settings(FUZZ, max_examples=EXAMPLES * len(ROUTES))
@given(case=st.sampled_from(ROUTES).flatmap(cases))
async def test_generated_requests(case: Case, proxies: Any, caplog: pytest.LogCaptureFixture) -> None:
    proxy = await proxies(case.route.setup)
    await proxy.send(case, caplog)
    RAN[case.route.name] += 1


async def test_paths_queries_and_unread_bodies(proxies: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The model and response routes with hostile path parameters; every bodiless route with a
    hostile query and a body it has no use for."""
    proxy = await proxies("well-behaved")
    sent = []
    for method, prefix in PATH_ROUTES:
        for value in PATH_VALUES:
            sent.append((method, prefix + value, b""))
    for number, (method, path) in enumerate(FIELDLESS + [(m, p + "gpt-test") for m, p in PATH_ROUTES]):
        for offset, value in enumerate(PATH_VALUES[1:9]):  # the first is too long for a URL twice
            body = ALL_HOSTILE[(number * 8 + offset) % len(ALL_HOSTILE)]
            sent.append((method, f"{path}?model={value}&stream={value}", body if method != "HEAD" else b""))
    for method, path, body in sent:
        route = Route(method, path, (), dialect=app_dialect(path))
        await proxy.send(Case(route, body, "well", f"{method} {path[:80]} with {body[:40]!r}"), caplog)
        RAN["paths, queries, unread bodies"] += 1


# ---------------------------------------------------------------- the whole stack, on a real socket

SERVER_KEY = "fuzz-server-key-0123456789"
BODY_LIMIT = 2 * LONG  # so that a body just above it is refused, not read
LOOPBACK_SAMPLE = 10  # every 10th case of the sweep goes over the socket too


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def raw_requests(path: str) -> dict[str, bytes]:
    """Requests no HTTP client library would send: bytes in the request line and headers that are
    not ASCII, lengths that are not numbers, and chunked bodies that break the framing."""
    body = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    auth = b"Authorization: Bearer " + SERVER_KEY.encode() + b"\r\n"

    def request(line: bytes, headers: bytes = b"", content: bytes = body, length: bool = True) -> bytes:
        size = b"Content-Length: %d\r\n" % len(content) if length else b""
        return line + b"\r\nHost: 127.0.0.1\r\n" + auth + headers + size + b"Connection: close\r\n\r\n" + content

    post = b"POST " + path.encode() + b" HTTP/1.1"
    return {
        "UTF-8 path": request(b"POST " + path.encode() + b"\xc3\xa9 HTTP/1.1"),
        "invalid UTF-8 path": request(b"POST " + path.encode() + b"\xff\xfe HTTP/1.1"),
        "percent-encoded invalid UTF-8": request(b"GET /v1/models/%ff%fe%ed%a0%80 HTTP/1.1", content=b""),
        "percent-encoded NUL": request(b"GET /v1/responses/resp_%00%0a HTTP/1.1", content=b""),
        "long path": request(b"GET /v1/models/" + b"a" * 60_000 + b" HTTP/1.1", content=b""),
        "invalid UTF-8 host": request(post, b"Host: local\xffhost\r\n"),
        "invalid UTF-8 origin": request(post, b"Origin: http://\xff\xfe.example\r\n"),
        "invalid UTF-8 key": request(post, b"x-api-key: \xff\xfe\r\n"),
        "invalid UTF-8 content type": request(post, b"Content-Type: application/json; charset=\xff\r\n"),
        "invalid UTF-8 anthropic-version": request(post, b"anthropic-version: \xff\r\n"),
        "huge header": request(post, b"X-Filler: " + b"a" * 100_000 + b"\r\n"),
        "5000-digit length": request(post, b"Content-Length: 1" + b"0" * 5000 + b"\r\n", length=False),
        "negative length": request(post, b"Content-Length: -1\r\n", length=False),
        "two lengths": request(post, b"Content-Length: 1\r\nContent-Length: 2\r\n", length=False),
        "length and chunked": request(post, b"Transfer-Encoding: chunked\r\n", chunked(body)),
        "huge chunk size": request(post, b"Transfer-Encoding: chunked\r\n", b"f" * 100 + b"\r\nxx\r\n0\r\n\r\n", False),
        "chunked invalid UTF-8": request(
            post, b"Transfer-Encoding: chunked\r\n", chunked(body[:20], b"\xff", body[20:]), False
        ),
        "chunked over the limit": request(
            post,
            b"Transfer-Encoding: chunked\r\n",
            chunked(*[b"a" * LONG] * 3),
            False,
        ),
        "declared over the limit": request(post, content=b"[" + b"1," * BODY_LIMIT + b"1]"),
    }


async def exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: status, headers, de-chunked body.
    Status 0: the connection was closed without an answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def send() -> None:
        writer.write(request)
        with contextlib.suppress(ConnectionError):  # a server may answer (and close) before reading it all
            await writer.drain()

    sending = asyncio.create_task(send())
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=ANSWER_WITHIN):
            answer += chunk
    except ConnectionResetError:
        pass  # after an answer to a body not read to its end: the answer was read all the same
    finally:
        sending.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await sending
            await writer.wait_closed()
    if not answer:
        return 0, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            if not int(size, 16):
                break
            chunks.append(rest[: int(size, 16)])
            rest = rest[int(size, 16) + 2 :]
        body = b"".join(chunks)
    return status, headers, body


@contextmanager
def logged(*names: str) -> Iterator[list[logging.LogRecord]]:
    """Records of these loggers (uvicorn's do not reach the root logger, where caplog listens)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    for name in names:
        logging.getLogger(name).addHandler(handler)
    try:
        yield records
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_the_whole_stack_on_a_socket(http: str) -> None:
    """uvicorn and its HTTP parser in front: what they do with bytes that are not UTF-8, framing
    that does not add up and bodies beyond the limit, and a sample of the sweep over a socket."""
    upstream = Upstream()
    fake = FakeUpstream()
    for path in ("/chat/completions", "/completions", "/embeddings", "/responses"):
        fake.on("POST", path, upstream.answer)
    upstreams = Upstreams(transport=fake.transport())
    values = dict(base_url=BASE_URL, api_key=API_KEY, server_api_key=SERVER_KEY, max_body_size=BODY_LIMIT)
    app = create_app(Settings(_env_file=None, **values), upstreams=upstreams)  # type: ignore[call-arg]
    problems: list[str] = []
    with logged("uvicorn", "oai2ollama") as records:
        async with serve(app, http=http) as url:
            headers = {"authorization": f"Bearer {SERVER_KEY}", "content-type": "application/json"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
                sample = [case for route in ROUTES for case in list(sweep(route))[::LOOPBACK_SAMPLE]]
                for case in sample:
                    response = await client.request(case.route.method, case.route.path, content=case.body)
                    try:
                        check_answer(case, response, 0.0)
                    except AssertionError as exc:
                        problems.append(str(exc)[:300])
                    RAN[f"socket ({http})"] += 1
            for route in ("/api/chat", "/v1/chat/completions", "/v1/messages"):
                for name, request in raw_requests(route).items():
                    status, answer_headers, body = await exchange(url, request)
                    RAN[f"socket ({http})"] += 1
                    dialect = app_dialect(request.split(b" ")[1].decode("latin-1"))
                    if status >= 500:
                        problems.append(f"{route} {name}: {status} {body[:200]!r}")
                    elif status >= 400 and "json" in answer_headers.get("content-type", ""):
                        try:  # ours; uvicorn refuses what it cannot parse with a plain-text 400 of its own
                            check_body(dialect, httpx.Response(status, headers=answer_headers, content=body), ours=True)
                        except (AssertionError, ValueError, KeyError, TypeError) as exc:
                            problems.append(f"{route} {name}: {status} {body[:200]!r}: {exc}")
    await upstreams.aclose()
    logged_problems = problems_logged(records)
    assert not problems and not logged_problems, (problems[:5], logged_problems[:5])


# ---------------------------------------------------------------- what the fuzzing found

ROUTE_NAMED = {route.name: route for route in ROUTES}
ASKED = b'"messages": [{"role": "user", "content": "hi"}]'
# Each was a failure once; kept so that every run tries them: (route, body, status, words in the error).
FOUND = [
    pytest.param(
        "POST /api/chat",
        b'{"model": "gpt-test", ' + ASKED + b', "options": {"temperature": NaN}}',
        400,
        "options.temperature: NaN is not JSON",
        id="NaN-sent-upstream",
    ),
    pytest.param(
        "POST /v1/chat/completions",
        b'{"model": "gpt-test", ' + ASKED + b', "temperature": 1e400}',
        400,
        "temperature: number out of range",
        id="1e400-sent-upstream-as-Infinity",
    ),
    pytest.param(
        "POST /v1/responses (translated)",
        b'{"model": "gpt-test", "input": "hi", "metadata": {"a": [-Infinity]}}',
        400,
        "metadata.a[0]: -Infinity is not JSON",
        id="Infinity-echoed-in-a-response",
    ),
    pytest.param(
        "POST /v1/messages",
        b'{"model": "gpt-test", "max_tokens": 16, ' + ASKED + b', "tools": [{"name": "f", "input_schema": {}}], '
        b'"tool_choice": {"type": ["auto"]}}',
        400,
        "tool_choice.type must be",
        id="tool_choice-type-unhashable",
    ),
    pytest.param(
        "POST /api/generate",
        b'{"model": "gpt-test", "keep_alive": "' + b"0" * 20_000 + b'!"}',
        200,
        '"done_reason":"load"',
        id="keep_alive-backtracking",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "words"), FOUND)
async def test_requests_that_once_failed(
    name: str, body: bytes, status: int, words: str, proxies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    route = ROUTE_NAMED[name]
    proxy = await proxies(route.setup)
    response = await proxy.send(Case(route, body, "well", "a request that once failed"), caplog)
    assert response.status_code == status, response.text[:300]
    assert words in response.text, response.text[:300]
