"""Write the canned upstream files that nginx serves during the benchmark.

Layout (one path prefix per scenario, so the proxy's base URL selects it):
    <out>/<scenario>/v1/models
    <out>/json/v1/chat/completions        non-streamed chat.completion
    <out>/sse<N>/v1/chat/completions      SSE stream with N content chunks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MODEL = "bench-model"
CREATED = 1700000000
COMPLETION_ID = "chatcmpl-bench0000000000000000000001"
PROMPT_TOKENS = 9
STREAM_SIZES = (10, 100, 2000)
ANSWER = (
    "Sure! Here is a short answer to your greeting. Hello there, it is nice to "
    "hear from you today. I am a benchmark model, so everything I say is canned, "
    "but I will try to be helpful anyway. Ask me anything you like."
)


def dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def models() -> str:
    entry = {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}
    return dump({"object": "list", "data": [entry]})


def usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def completion() -> str:
    message = {"role": "assistant", "content": ANSWER, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    body = {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [choice],
        "usage": usage(len(ANSWER.split())),
        "system_fingerprint": None,
    }
    return dump(body)


def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
    body = {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": choices,
        **extra,
    }
    return f"data: {dump(body)}\n\n"


def stream(n_chunks: int) -> str:
    words = ANSWER.split()
    parts: list[str] = []
    for i in range(n_chunks):
        delta: dict[str, str] = {"content": words[i % len(words)] + " "}
        if i == 0:
            delta = {"role": "assistant", **delta}
        parts.append(chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
    parts.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    parts.append(chunk([], usage=usage(n_chunks)))
    parts.append("data: [DONE]\n\n")
    return "".join(parts)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(out: Path) -> None:
    scenarios: dict[str, str] = {"json": completion()}
    scenarios |= {f"sse{n}": stream(n) for n in STREAM_SIZES}
    for name, body in scenarios.items():
        write(out / name / "v1" / "models", models())
        write(out / name / "v1" / "chat" / "completions", body)


# Generated files stay out of the tree: bench/canned/ is ignored by git.
DEFAULT_OUT = Path(__file__).resolve().parent / "canned"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out", nargs="?", type=Path, default=DEFAULT_OUT, help="the folder to write into (default: bench/canned/)"
    )
    main(parser.parse_args().out)
