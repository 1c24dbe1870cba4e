"""Native requests → OpenAI bodies: every mapping rule as JSON in, JSON out."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from oai2ollama.errors import BadRequest
from oai2ollama.translate.answer import stable_call_id
from oai2ollama.translate.images import image_url, sniff_image_type
from oai2ollama.translate.ollama_request import (
    chat_messages,
    chat_request,
    embed_inputs,
    embed_request,
    generate_request,
    uses_completions,
)

STREAMING = {"stream": True, "stream_options": {"include_usage": True}}
USER = [{"role": "user", "content": "hi"}]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 8).decode()
GIF87 = base64.b64encode(b"GIF87a" + b"\0" * 6).decode()
GIF89 = base64.b64encode(b"GIF89a" + b"\0" * 6).decode()
WEBP = base64.b64encode(b"RIFF\x10\0\0\0WEBPVP8 ").decode()
UNKNOWN = base64.b64encode(b"BM\0\0\0\0\0\0\0\0").decode()


def chat(req: dict[str, Any], *capabilities: str) -> dict[str, Any]:
    return chat_request(req, upstream_model="up", capabilities=frozenset(capabilities))


def generate(req: dict[str, Any], *capabilities: str) -> dict[str, Any]:
    return generate_request(req, upstream_model="up", capabilities=frozenset(capabilities))


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param(USER, USER, id="user"),
        pytest.param(
            [{"role": "System", "content": "be brief"}, {"role": "USER", "content": "hi"}],
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            id="roles-lower-cased",
        ),
        pytest.param([{"role": "user"}], [{"role": "user", "content": ""}], id="missing-content"),
        pytest.param(
            [{"role": "assistant", "content": "4", "thinking": "2+2"}],
            [{"role": "assistant", "content": "4", "reasoning_content": "2+2"}],
            id="assistant-thinking",
        ),
        pytest.param(
            [{"role": "assistant", "content": "4", "thinking": ""}],
            [{"role": "assistant", "content": "4"}],
            id="empty-thinking-dropped",
        ),
        pytest.param(
            [{"role": "user", "content": "what is this?", "images": [PNG]}],
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        image_part(f"data:image/png;base64,{PNG}"),
                    ],
                }
            ],
            id="image-with-text",
        ),
        pytest.param(
            [{"role": "user", "content": "", "images": [JPEG, GIF89]}],
            [
                {
                    "role": "user",
                    "content": [
                        image_part(f"data:image/jpeg;base64,{JPEG}"),
                        image_part(f"data:image/gif;base64,{GIF89}"),
                    ],
                }
            ],
            id="images-without-text",
        ),
        pytest.param(
            [{"role": "user", "content": "x", "images": ["data:image/webp;base64,UklGRg=="]}],
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "x"}, image_part("data:image/webp;base64,UklGRg==")],
                }
            ],
            id="data-url-accepted",
        ),
        pytest.param(
            [{"role": "user", "content": "x", "images": []}],
            [{"role": "user", "content": "x"}],
            id="no-images",
        ),
    ],
)
def test_messages(messages: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert chat_messages(messages) == expected


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF87, "image/gif"),
        (GIF89, "image/gif"),
        (WEBP, "image/webp"),
        (UNKNOWN, "image/jpeg"),  # Ollama's fallback
    ],
)
def test_image_mime_is_sniffed_from_the_bytes(data: str, mime: str) -> None:
    assert sniff_image_type(base64.b64decode(data)) == mime
    assert image_url(data, "images[0]") == f"data:{mime};base64,{data}"


def test_only_the_head_of_an_image_is_decoded_to_sniff_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large image must not be decoded whole on the event loop just to read its magic number."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024)).decode()
    decoded: list[int] = []
    real = base64.b64decode

    def recording(data: Any, *args: Any, **kwargs: Any) -> bytes:
        decoded.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(base64, "b64decode", recording)
    assert image_url(png, "images[0]") == f"data:image/png;base64,{png}"
    assert decoded and max(decoded) <= 64, decoded
    # By behaviour: a tail that is not base64 at all leaves the sniff (and the 400 for a bad head) alone.
    assert image_url(PNG + "%%%%" * 1000, "images[0]").startswith("data:image/png;base64,")
    with pytest.raises(BadRequest, match="not valid base64"):
        image_url("%%%%" + PNG, "images[0]")


def test_image_without_padding_is_padded() -> None:
    assert image_url(PNG.rstrip("="), "images[0]") == f"data:image/png;base64,{PNG}"


def test_tool_calls_get_string_arguments_and_stable_ids() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_given", "function": {"index": 1, "name": "get_weather", "arguments": {"city": "Rome"}}},
                {"function": {"name": "now"}},
            ],
        },
    ]
    first_id = stable_call_id(1, 0, "get_weather")
    assert chat_messages(messages)[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": first_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {
                "id": "call_given",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
            {"id": stable_call_id(1, 2, "now"), "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }
    assert re.fullmatch(r"call_[0-9a-f]{8}", first_id)
    # The same history replayed gets the same ids, so upstream prompt caches keep working.
    assert chat_messages(messages) == chat_messages(messages)


def test_string_arguments_are_kept() -> None:
    messages = [{"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}]}]
    assert chat_messages(messages)[0]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'


def _calls(*names: str, ids: tuple[str, ...] = ()) -> dict[str, Any]:
    calls = []
    for position, name in enumerate(names):
        call: dict[str, Any] = {"function": {"name": name, "arguments": {}}}
        if ids:
            call["id"] = ids[position]
        calls.append(call)
    return {"role": "assistant", "content": "", "tool_calls": calls}


@pytest.mark.parametrize(
    ("history", "paired"),
    [
        pytest.param(
            [
                _calls("a", "b", ids=("id_a", "id_b")),
                {"role": "tool", "tool_call_id": "id_b", "content": "B"},
                {"role": "tool", "tool_call_id": "id_a", "content": "A"},
            ],
            ["id_b", "id_a"],
            id="by-tool-call-id",
        ),
        pytest.param(
            [
                _calls("a", "b", ids=("id_a", "id_b")),
                {"role": "tool", "tool_name": "b", "content": "B"},
                {"role": "tool", "tool_name": "a", "content": "A"},
            ],
            ["id_b", "id_a"],
            id="by-tool-name",
        ),
        pytest.param(
            [
                _calls("a", "b", ids=("id_a", "id_b")),
                {"role": "tool", "content": "A"},
                {"role": "tool", "content": "B"},
            ],
            ["id_a", "id_b"],
            id="by-order",
        ),
        pytest.param(
            [
                _calls("a", "a", ids=("id_1", "id_2")),
                {"role": "tool", "tool_name": "a", "content": "1"},
                {"role": "tool", "tool_name": "a", "content": "2"},
            ],
            ["id_1", "id_2"],
            id="same-name-in-order",
        ),
        pytest.param(
            [
                _calls("a", "b", ids=("id_a", "id_b")),
                {"role": "tool", "tool_name": "unknown", "content": "?"},
                {"role": "tool", "tool_name": "b", "content": "B"},
            ],
            ["id_a", "id_b"],
            id="unknown-name-falls-back-to-order",
        ),
        pytest.param(
            [
                _calls("a", ids=("id_a",)),
                {"role": "tool", "tool_call_id": "client_own", "content": "A"},
            ],
            ["client_own"],
            id="unmatched-id-kept",
        ),
        pytest.param(
            [_calls("a", "b"), {"role": "tool", "tool_name": "b", "content": "B"}, {"role": "tool", "content": "A"}],
            [stable_call_id(0, 1, "b"), stable_call_id(0, 0, "a")],
            id="generated-ids",
        ),
    ],
)
def test_tool_results_are_paired_with_their_calls(history: list[dict[str, Any]], paired: list[str]) -> None:
    converted = chat_messages(history)
    assert [m["tool_call_id"] for m in converted if m["role"] == "tool"] == paired
    assert next(m for m in converted if m["role"] == "tool")["content"] == history[1]["content"]


TOOL_IMAGES_NOTE = {"type": "text", "text": "[images from the tool results above]"}


@pytest.mark.parametrize(
    ("history", "roles", "images"),
    [
        pytest.param(
            [
                _calls("shot", "read", ids=("id_s", "id_r")),
                {"role": "tool", "tool_call_id": "id_s", "content": "screenshot", "images": [PNG]},
                {"role": "tool", "tool_call_id": "id_r", "content": "text"},
                {"role": "user", "content": "and now?"},
            ],
            ["assistant", "tool", "tool", "user", "user"],
            [f"data:image/png;base64,{PNG}"],
            id="after-the-turns-results",
        ),
        pytest.param(
            [
                _calls("shot", ids=("id_s",)),
                {"role": "tool", "tool_call_id": "id_s", "content": "", "images": [JPEG, PNG]},
            ],
            ["assistant", "tool", "user"],
            [f"data:image/jpeg;base64,{JPEG}", f"data:image/png;base64,{PNG}"],
            id="at-the-end",
        ),
        pytest.param(
            [_calls("a", ids=("id_a",)), {"role": "tool", "tool_call_id": "id_a", "content": "A", "images": []}],
            ["assistant", "tool"],
            [],
            id="no-images",
        ),
    ],
)
def test_tool_result_images_follow_the_results(
    history: list[dict[str, Any]], roles: list[str], images: list[str]
) -> None:
    converted = chat_messages(history)
    assert [m["role"] for m in converted] == roles
    assert all(isinstance(m["content"], str) for m in converted if m["role"] == "tool")
    if images:
        media = next(m for m in converted if m["role"] == "user" and isinstance(m["content"], list))
        assert media["content"] == [TOOL_IMAGES_NOTE, *(image_part(url) for url in images)]
        assert converted.index(media) == max(i for i, m in enumerate(converted) if m["role"] == "tool") + 1


def test_each_assistant_turn_pairs_its_own_results() -> None:
    history = [
        _calls("a"),
        {"role": "tool", "tool_name": "a", "content": "1"},
        _calls("a"),
        {"role": "tool", "tool_name": "a", "content": "2"},
    ]
    ids = [m["tool_call_id"] for m in chat_messages(history) if m["role"] == "tool"]
    assert ids == [stable_call_id(0, 0, "a"), stable_call_id(2, 0, "a")]
    assert ids[0] != ids[1]


# ---------------------------------------------------------------- the whole chat body


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({}, {}, id="nothing-else"),
        pytest.param(
            {
                "options": {
                    "temperature": 0.2,
                    "top_p": 0.9,
                    "seed": 42,
                    "num_predict": 100,
                    "presence_penalty": 0.5,
                    "frequency_penalty": 0.25,
                    "stop": ["\n\n", "END"],
                }
            },
            {
                "temperature": 0.2,
                "top_p": 0.9,
                "seed": 42,
                "max_tokens": 100,
                "presence_penalty": 0.5,
                "frequency_penalty": 0.25,
                "stop": ["\n\n", "END"],
            },
            id="standard-options",
        ),
        pytest.param(
            {"options": {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "typical_p": 0.7}},
            {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "repetition_penalty": 1.1, "typical_p": 0.7},
            id="extra-sampling-options",
        ),
        pytest.param(
            {
                "options": {
                    "num_ctx": 8192,
                    "num_gpu": 1,
                    "num_thread": 8,
                    "num_batch": 512,
                    "use_mmap": True,
                    "num_keep": 4,
                    "mirostat": 0,
                    "repeat_last_n": 64,
                },
                "keep_alive": "5m",
                "truncate": True,
                "shift": True,
            },
            {},
            id="local-only-knobs-ignored",
        ),
        pytest.param({"options": {"stop": "END"}}, {"stop": ["END"]}, id="stop-as-string"),
        pytest.param({"options": {"stop": []}}, {}, id="empty-stop"),
        pytest.param({"options": {"seed": -1, "num_predict": -1}}, {}, id="unset-sentinels"),
        pytest.param({"options": {"num_predict": -2}}, {}, id="num-predict-fill-context"),
        pytest.param({"options": None}, {}, id="null-options"),
        pytest.param({"num_predict": 64}, {"max_tokens": 64}, id="top-level-num-predict"),
        pytest.param(
            {"num_predict": 64, "options": {"num_predict": 10}}, {"max_tokens": 10}, id="options-num-predict-wins"
        ),
        pytest.param({"format": "json"}, {"response_format": {"type": "json_object"}}, id="format-json"),
        pytest.param(
            {"format": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "schema",
                        "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                    },
                }
            },
            id="format-schema",
        ),
        pytest.param({"format": ""}, {}, id="format-empty"),
        pytest.param({"tools": []}, {}, id="empty-tools-dropped"),
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
            id="tools-forwarded",
        ),
        pytest.param(
            {"tools": [{"function": {"name": "f"}}]},
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            id="tool-type-filled-in",
        ),
        pytest.param({"think": True}, {"reasoning_effort": "medium"}, id="think-true"),
        pytest.param({"think": "low"}, {"reasoning_effort": "low"}, id="think-low"),
        pytest.param({"think": "medium"}, {"reasoning_effort": "medium"}, id="think-medium"),
        pytest.param({"think": "high"}, {"reasoning_effort": "high"}, id="think-high"),
        pytest.param({"think": "max"}, {"reasoning_effort": "high"}, id="think-max"),
        pytest.param({"think": False}, {}, id="think-false-non-thinking-model"),
        pytest.param({"think": None}, {}, id="think-null"),
        pytest.param({"logprobs": True}, {"logprobs": True}, id="logprobs"),
        pytest.param({"logprobs": True, "top_logprobs": 5}, {"logprobs": True, "top_logprobs": 5}, id="top-logprobs"),
        pytest.param({"logprobs": True, "top_logprobs": 0}, {"logprobs": True}, id="top-logprobs-zero"),
        pytest.param({"logprobs": False, "top_logprobs": 3}, {}, id="top-logprobs-without-logprobs"),
    ],
)
def test_chat_request(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat({"model": "m", "messages": USER, **extra}) == {
        "model": "up",
        "messages": USER,
        **expected,
        **STREAMING,
    }


def test_think_false_is_sent_only_to_thinking_models() -> None:
    # Zed sends think:false to every model; a model that cannot reason must not get a reasoning knob.
    assert "reasoning_effort" not in chat({"messages": USER, "think": False}, "completion", "tools")
    assert chat({"messages": USER, "think": False}, "completion", "thinking")["reasoning_effort"] == "none"


def test_think_true_is_forwarded_even_without_the_capability() -> None:
    # Capabilities may be incomplete (an OpenAI /models list says nothing); the client asked.
    assert chat({"messages": USER, "think": "high"}, "completion")["reasoning_effort"] == "high"


def _error(call: Any, *args: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize(
    ("req", "message"),
    [
        ({"messages": "hi"}, "messages must be a list"),
        ({"messages": ["hi"]}, "messages[0] must be an object"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role must be a string"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string"),
        (
            {"messages": [USER[0], {"role": "user", "content": "x", "images": ["not base64!"]}]},
            "messages[1].images[0] is not valid base64",
        ),
        ({"messages": [{"role": "user", "images": [PNG, 7]}]}, "messages[0].images[1] must be a base64 string"),
        ({"messages": [{"role": "user", "images": PNG}]}, "messages[0].images must be a list"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}]},
            "messages[0].tool_calls[0].function.name must be a string",
        ),
        ({"messages": [{"role": "assistant", "tool_calls": {"a": 1}}]}, "messages[0].tool_calls must be a list"),
        ({"messages": USER, "options": [1]}, "options must be an object"),
        ({"messages": USER, "options": {"temperature": "hot"}}, "options.temperature must be a number"),
        ({"messages": USER, "options": {"seed": 1.5}}, "options.seed must be an integer"),
        ({"messages": USER, "options": {"num_predict": True}}, "options.num_predict must be an integer"),
        ({"messages": USER, "options": {"top_k": "40"}}, "options.top_k must be a number"),
        ({"messages": USER, "options": {"stop": [1]}}, "options.stop must be a list of strings"),
        ({"messages": USER, "format": "xml"}, 'invalid format: "xml"'),
        ({"messages": USER, "format": 3}, "invalid format: 3"),
        ({"messages": USER, "tools": "f"}, "tools must be a list of objects"),
        ({"messages": USER, "think": "extreme"}, 'invalid think value: "extreme"'),
        ({"messages": USER, "think": 1}, "invalid think value: 1"),
        ({"messages": USER, "logprobs": True, "top_logprobs": 21}, "top_logprobs must be between 0 and 20"),
        ({"messages": USER, "top_logprobs": -1}, "top_logprobs must be between 0 and 20"),
    ],
)
def test_invalid_chat_requests_name_the_field(req: dict[str, Any], message: str) -> None:
    assert message in _error(chat, req)


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param(
            {"prompt": "Why is the sky blue?"},
            {"messages": [{"role": "user", "content": "Why is the sky blue?"}], **STREAMING},
            id="prompt",
        ),
        pytest.param(
            {"prompt": "hi", "system": "be brief", "options": {"temperature": 0}},
            {
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                "temperature": 0,
                **STREAMING,
            },
            id="system-and-options",
        ),
        pytest.param(
            {"prompt": "describe", "images": [GIF87]},
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "describe"},
                            image_part(f"data:image/gif;base64,{GIF87}"),
                        ],
                    }
                ],
                **STREAMING,
            },
            id="images",
        ),
        pytest.param(
            {"prompt": "def add(a, b):", "suffix": "\n\nprint(add(1, 2))", "options": {"num_predict": 32}},
            {"prompt": "def add(a, b):", "suffix": "\n\nprint(add(1, 2))", "max_tokens": 32, **STREAMING},
            id="fill-in-the-middle",
        ),
        pytest.param(
            {"prompt": "<|user|>hi<|assistant|>", "raw": True, "system": "ignored in raw mode"},
            {"prompt": "<|user|>hi<|assistant|>", **STREAMING},
            id="raw",
        ),
        pytest.param(
            {"prompt": "x", "suffix": "y", "think": True, "logprobs": True, "top_logprobs": 3},
            {"prompt": "x", "suffix": "y", "logprobs": 3, **STREAMING},
            id="completions-logprobs-count-no-think",
        ),
        pytest.param(
            {"prompt": "x", "raw": True, "logprobs": True},
            {"prompt": "x", "logprobs": 1, **STREAMING},
            id="completions-logprobs-default",
        ),
        pytest.param(
            {"prompt": "2+2?", "think": "low", "format": "json"},
            {
                "messages": [{"role": "user", "content": "2+2?"}],
                "response_format": {"type": "json_object"},
                "reasoning_effort": "low",
                **STREAMING,
            },
            id="think-and-format",
        ),
    ],
)
def test_generate_request(req: dict[str, Any], expected: dict[str, Any]) -> None:
    assert generate({"model": "m", **req}) == {"model": "up", **expected}


@pytest.mark.parametrize(
    ("req", "legacy"),
    [({"prompt": "x"}, False), ({"suffix": "y"}, True), ({"suffix": ""}, False), ({"raw": True}, True)],
)
def test_uses_completions(req: dict[str, Any], legacy: bool) -> None:
    assert uses_completions(req) is legacy


@pytest.mark.parametrize(
    ("req", "message"),
    [
        ({"prompt": ["a"]}, "prompt must be a string"),
        ({"prompt": "x", "system": 1}, "system must be a string"),
        ({"prompt": "x", "images": ["%%%"]}, "images[0] is not valid base64"),
        ({"prompt": "x", "suffix": 1}, "suffix must be a string"),
        ({"prompt": "x", "suffix": "y", "think": "very"}, "invalid think value"),
    ],
)
def test_invalid_generate_requests_name_the_field(req: dict[str, Any], message: str) -> None:
    assert message in _error(generate, req)


# ---------------------------------------------------------------- embeddings


@pytest.mark.parametrize(
    ("value", "inputs"),
    [(None, []), ("", []), ([], []), ("one", ["one"]), (["a", "b"], ["a", "b"])],
)
def test_embed_inputs(value: Any, inputs: list[str]) -> None:
    assert embed_inputs({"input": value}, "input") == inputs


@pytest.mark.parametrize("value", [3, ["a", 1], {"text": "a"}])
def test_invalid_embed_input(value: Any) -> None:
    assert "invalid input type" in _error(embed_inputs, {"input": value}, "input")


def test_embed_request() -> None:
    assert embed_request(["a", "b"], upstream_model="emb") == {
        "model": "emb",
        "input": ["a", "b"],
        "encoding_format": "float",
    }
    assert embed_request(["a"], upstream_model="emb", dimensions=256)["dimensions"] == 256


def test_embed_request_rejects_bad_dimensions() -> None:
    for bad in (0, -3, "256", True):
        with pytest.raises(BadRequest, match="dimensions must be a positive integer"):
            embed_request(["a"], upstream_model="emb", dimensions=bad)
