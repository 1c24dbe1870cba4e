"""How big a model is, for `ollama show` and `/api/tags`: what the upstream publishes, else what its
id says (`8b`, `135M`), else a common open model's size; Ollama's way of writing the numbers."""

from __future__ import annotations

import re

# What `ollama show` prints for a model nothing tells the size of: a common open model's (Llama 3 8B).
DEFAULT_PARAMETER_COUNT = 8_000_000_000
# Typical hidden sizes of transformer models up to a parameter count (SmolLM2 135M 576, Qwen2.5
# 0.5B 896, 1.5B 1536, Llama 3.2 3B 3072, Llama 3 8B 4096, 13B-32B 5120, 70B 8192, 405B 16384).
_EMBEDDING_LENGTHS = (
    (200_000_000, 576),
    (700_000_000, 896),
    (2_000_000_000, 1536),
    (4_500_000_000, 3072),
    (10_000_000_000, 4096),
    (40_000_000_000, 5120),
    (100_000_000_000, 8192),
    (250_000_000_000, 12288),
)
# A size in an id or tag: `8b`, `70B`, `1.5b`, `135M`, `8x7b` (experts × size), standing alone.
_SIZE_IN_ID = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])", re.IGNORECASE)


def parameters_from_id(model_id: str) -> int | None:
    """The parameter count an id or tag states (`llama3.1:8b`, `Qwen2.5-1.5B-Instruct`,
    `SmolLM2-135M`, `mixtral-8x7b`), or None; the first size named wins (`qwen3-30b-a3b`)."""
    match = _SIZE_IN_ID.search(model_id.rsplit("/", 1)[-1])
    if match is None:
        return None
    experts, size, unit = match.groups()
    count = float(size) * (1e9 if unit in "bB" else 1e6) * (int(experts) if experts else 1)
    return round(count) or None


def human_number(count: int) -> str:
    """A count as Ollama writes a parameter size (Go's `format.HumanNumber`): 8B, 1.5B, 135M, 494.03M."""
    for scale, unit, decimals in ((1_000_000_000, "B", 1), (1_000_000, "M", 2)):
        if count >= scale:
            number = count / scale
            return f"{number:.0f}{unit}" if number == int(number) else f"{number:.{decimals}f}{unit}"
    return f"{count / 1000:.0f}K" if count >= 1000 else str(count)


def embedding_length_for(count: int) -> int:
    """A typical hidden size for a model of `count` parameters."""
    return next((width for top, width in _EMBEDDING_LENGTHS if count <= top), 16384)
