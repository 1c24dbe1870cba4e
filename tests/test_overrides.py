"""A model's configured options beneath each request: request > overrides > upstream defaults."""

from __future__ import annotations

from typing import Any

import pytest

from oai2ollama.translate import ollama_request as to_openai
from oai2ollama.translate.overrides import (
    native_request,
    openai_request,
    option_problem,
    parameter_lines,
    request_timeout,
)

OVERRIDES: dict[str, Any] = {"temperature": 0.2, "num_predict": 512, "stop": ["<END>"], "top_k": 20, "think": "low"}


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        (
            {"model": "m"},
            {
                "model": "m",
                "options": {"temperature": 0.2, "num_predict": 512, "stop": ["<END>"], "top_k": 20},
                "think": "low",
            },
        ),
        (
            {"model": "m", "options": {"temperature": 0.9, "stop": ["x"], "seed": 7}, "think": False},
            {
                "model": "m",
                "options": {"temperature": 0.9, "num_predict": 512, "stop": ["x"], "top_k": 20, "seed": 7},
                "think": False,
            },
        ),
        (  # null means "not said"
            {"model": "m", "options": {"temperature": None}, "think": None},
            {
                "model": "m",
                "options": {"temperature": 0.2, "num_predict": 512, "stop": ["<END>"], "top_k": 20},
                "think": "low",
            },
        ),
        (  # Open WebUI's top-level num_predict is the request speaking
            {"model": "m", "num_predict": 64},
            {
                "model": "m",
                "num_predict": 64,
                "options": {"temperature": 0.2, "stop": ["<END>"], "top_k": 20},
                "think": "low",
            },
        ),
        (  # a malformed options value is left for the translator to reject
            {"model": "m", "options": "hot"},
            {"model": "m", "options": "hot", "think": "low"},
        ),
    ],
    ids=["fills", "request-wins", "nulls", "top-level-num-predict", "malformed"],
)
def test_native_request(req: dict[str, Any], expected: dict[str, Any]) -> None:
    original = {key: (dict(value) if isinstance(value, dict) else value) for key, value in req.items()}
    assert native_request(req, OVERRIDES) == expected
    assert req == original, "the client's request is not changed in place"


def test_native_request_without_overrides_is_the_request() -> None:
    req = {"model": "m", "options": {"temperature": 1}}
    assert native_request(req, {}) is req


def test_native_overrides_reach_the_upstream_body() -> None:
    req = native_request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "options": {"top_k": 5}}, OVERRIDES
    )
    body = to_openai.chat_request(req, upstream_model="up", capabilities=frozenset({"completion", "thinking"}))
    assert {key: body[key] for key in ("temperature", "max_tokens", "stop", "top_k", "reasoning_effort")} == {
        "temperature": 0.2,
        "max_tokens": 512,
        "stop": ["<END>"],
        "top_k": 5,
        "reasoning_effort": "low",
    }


@pytest.mark.parametrize(
    ("req", "path", "capabilities", "expected"),
    [
        (
            {"model": "m", "messages": []},
            "/chat/completions",
            {"completion"},
            {
                "model": "m",
                "messages": [],
                "temperature": 0.2,
                "top_k": 20,
                "max_tokens": 512,
                "stop": ["<END>"],
                "reasoning_effort": "low",
            },
        ),
        (
            {"model": "m", "temperature": 1.0, "max_completion_tokens": 9, "stop": "x", "reasoning_effort": "high"},
            "/chat/completions",
            {"completion"},
            {
                "model": "m",
                "temperature": 1.0,
                "max_completion_tokens": 9,
                "stop": "x",
                "reasoning_effort": "high",
                "top_k": 20,
            },
        ),
        (  # OpenRouter's reasoning object is the client choosing
            {"model": "m", "reasoning": {"enabled": False}, "max_tokens": 10},
            "/chat/completions",
            {"completion"},
            {
                "model": "m",
                "reasoning": {"enabled": False},
                "max_tokens": 10,
                "temperature": 0.2,
                "top_k": 20,
                "stop": ["<END>"],
            },
        ),
        (
            {"model": "m", "prompt": "def f():"},
            "/completions",
            {"completion"},
            {"model": "m", "prompt": "def f():", "temperature": 0.2, "top_k": 20, "max_tokens": 512, "stop": ["<END>"]},
        ),
        (
            {"model": "m", "input": "hi"},
            "/responses",
            {"completion"},
            {"model": "m", "input": "hi", "temperature": 0.2, "max_output_tokens": 512, "reasoning": {"effort": "low"}},
        ),
        ({"model": "m", "input": "hi"}, "/embeddings", {"embedding"}, {"model": "m", "input": "hi"}),
    ],
    ids=["chat-fills", "chat-request-wins", "chat-reasoning-object", "completions", "responses", "embeddings"],
)
def test_openai_request(req: dict[str, Any], path: str, capabilities: set[str], expected: dict[str, Any]) -> None:
    assert openai_request(req, OVERRIDES, path=path, capabilities=frozenset(capabilities)) == expected


@pytest.mark.parametrize(
    ("think", "capabilities", "effort"),
    [
        (True, set(), "medium"),
        ("max", set(), "high"),
        ("medium", set(), "medium"),
        (False, {"completion", "thinking"}, "none"),
        (False, {"completion"}, None),  # a model that does not reason is not told to stop
    ],
)
def test_think_override_on_openai_routes(think: Any, capabilities: set[str], effort: str | None) -> None:
    body = openai_request({"model": "m"}, {"think": think}, capabilities=frozenset(capabilities))
    assert body.get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_predict": -1}, "max_tokens"),  # "no limit" is the upstream's default already
        ({"stop": []}, "stop"),
    ],
)
def test_empty_overrides_send_nothing(overrides: dict[str, Any], field: str) -> None:
    assert field not in openai_request({"model": "m"}, overrides)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("temperature", 0.7, None),
        ("temperature", 1, None),
        ("temperature", "hot", "must be a number"),
        ("temperature", True, "must be a number, not a boolean"),
        ("num_predict", 1.5, "must be an integer"),
        ("seed", 42, None),
        ("stop", ["a", "b"], None),
        ("stop", ["a", 1], "must be a list of strings"),
        ("think", True, None),
        ("think", "high", None),
        ("think", "extreme", "must be true, false or one of low, medium, high, max"),
        ("num_ctx", 8192, "set the model's context_length instead of options.num_ctx"),
        ("temprature", 0.7, "unknown option (known: temperature, top_p"),
        ("num_gpu", 1, "unknown option"),
    ],
)
def test_option_problem(name: str, value: Any, problem: str | None) -> None:
    found = option_problem(name, value)
    assert found == problem if problem is None else (found or "").startswith(problem)


def test_parameter_lines() -> None:
    lines = parameter_lines(8192, {"temperature": 0.5, "seed": 3, "stop": ["a", "b"], "think": True, "top_p": 1.0})
    assert lines == [
        ("num_ctx", "8192"),
        ("temperature", "0.5"),
        ("seed", "3"),
        ("stop", '"a"'),
        ("stop", '"b"'),
        ("top_p", "1"),
    ]


def test_a_request_timeout_is_oai2ollamas_own_and_never_sent_or_shown() -> None:
    overrides = {"temperature": 0.2, "request_timeout": 30.0}
    native = native_request({"model": "m", "messages": []}, overrides)
    assert native["options"] == {"temperature": 0.2}
    assert openai_request({"model": "m"}, overrides) == {"model": "m", "temperature": 0.2}
    assert openai_request({"model": "m"}, overrides, path="/responses") == {"model": "m", "temperature": 0.2}
    assert parameter_lines(8192, overrides) == [("num_ctx", "8192"), ("temperature", "0.2")]
    assert request_timeout(overrides, 5.0) == 30.0
    assert request_timeout({}, 5.0) == 5.0
    assert request_timeout({}, None) is None
