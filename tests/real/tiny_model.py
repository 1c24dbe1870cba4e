"""A tiny llama GGUF with hand-set weights that answers deterministically, for the real-upstream tier.

The model is one transformer layer whose answer depends on two things only: the current token,
and whether the context holds a tool list or a tool result. Every output piece is its own token,
so "what comes next" is a lookup on the current token (the residual path carries a one-hot of it
to the output matrix); the first token after the prompt also depends on two flags that two
attention heads compute:

- head 0 attends (almost) only to the `<tools>` token the chat template writes when tools are
  offered, head 1 only to `<tool_response>`, which it writes around a tool's result. Their queries
  are the same for every token and their keys are zero except on that one token, so the softmax
  puts ~all weight on it when present (score 60 against log(4096) ≈ 8) and its value is 1; absent,
  every value is 0. The q/k signal sits in the lowest-frequency RoPE pair, where rotation over a
  4k context changes the score by <0.1%.
- no flag → ANSWER; tools → the TOOL_CALL pieces; a tool result → TOOL_ANSWER. Each then ends
  with `<|im_end|>` (end of generation).

Margins between the chosen logit and any other are ≥ 40 after normalisation, so temperature,
top-k/p, and repeat/presence/frequency penalties cannot change the choice. The feed-forward block
is zero: the residual stream is token one-hot + flags, and the final RMSNorm only rescales it,
which never changes an argmax.

`forward` is a numpy implementation of the same computation, used by the unit test to check the
weights before llama.cpp runs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANSWER_PIECES = ("Hello", "!", " I", " am", " a", " tiny", " test", " model", ".")
TOOL_ANSWER_PIECES = ("The", " weather", " in", " Paris", " is", " sunny", ".")
ANSWER = "".join(ANSWER_PIECES)  # "Hello! I am a tiny test model."
TOOL_ANSWER = "".join(TOOL_ANSWER_PIECES)  # "The weather in Paris is sunny."
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"city": "Paris"}
# Split where llama.cpp's tool grammar lets one piece follow another, so the server streams the
# call as several deltas (as real models do) instead of one.
TOOL_CALL_PIECES = (
    "<tool_call>",
    '\n{"name": "get_weather", "arguments": ',
    '{"city": ',
    '"Paris"}',
    "}\n",
    "</tool_call>",
)

BOS, EOS, IM_START, IM_END, TOOLS, TOOLS_END, RESPONSE, RESPONSE_END = (
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<tools>",
    "</tools>",
    "<tool_response>",
    "</tool_response>",
)
CONTROL_TOKENS = (BOS, EOS, IM_START, IM_END, TOOLS, TOOLS_END, RESPONSE, RESPONSE_END)

# ChatML with Hermes-style tools: what llama.cpp's template analysis recognises as JSON tool calls
# between <tool_call> tags, so its server parses them out of the text (and constrains them with a
# grammar). Tools, calls and results are rendered with names and arguments in plain sight, which
# is how llama.cpp's capability probe tells that the template supports them.
CHAT_TEMPLATE = """\
{%- set system = messages[0].content if messages and messages[0].role == 'system' else none -%}
{%- if tools -%}
<|im_start|>system
{% if system %}{{ system }}
{% endif %}<tools>
{% for tool in tools -%}
{"name": {{ tool.function.name | tojson }}, "description": {{ (tool.function.description or '') | tojson }}, \
"parameters": {{ tool.function.parameters | tojson }}}
{% endfor -%}
</tools><|im_end|>
{% elif system -%}
<|im_start|>system
{{ system }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- elif message.role == 'assistant' -%}
<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif -%}
{%- for call in message.tool_calls or [] -%}
{% if loop.first and message.content %}
{% endif %}<tool_call>
{"name": {{ call.function.name | tojson }}, "arguments": \
{% if call.function.arguments is string %}{{ call.function.arguments }}\
{% else %}{{ call.function.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor -%}
<|im_end|>
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""

CONTEXT_LENGTH = 4096
N_EMBD = 64
N_HEAD = 4
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 64
ROPE_BASE = 1_000_000.0
RMS_EPS = 1e-5
# The q/k signal of a flag head: head dimension 14 is the first of the lowest-frequency RoPE pair.
QK_DIM = HEAD_DIM - 2
FLAG_SCORE = 60.0  # attention score of a flag token over any other

# Output logits per unit of normalised residual (see the module docstring for why these win).
NEXT = 60.0  # the fixed successor of an output piece
FIRST = 10.0  # the first piece of an answer, from a prompt's last token
FLAG = 10.0  # how much one flag moves the choice of first piece

_TOKEN_TYPE_NORMAL, _TOKEN_TYPE_UNKNOWN, _TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED, _TOKEN_TYPE_BYTE = 1, 2, 3, 4, 6


@dataclass(frozen=True)
class TinyModel:
    tokens: list[str]
    token_types: list[int]
    weights: dict[str, np.ndarray]  # numpy layout: (out, in); gguf stores the reverse

    def id(self, piece: str) -> int:
        return self.tokens.index(piece)

    @property
    def eos(self) -> int:
        return self.id(IM_END)

    def tokenize(self, text: str) -> list[int]:
        """Control and user-defined pieces wherever they occur (longest first), bytes for the rest:
        llama.cpp's split with special tokens parsed, minus SentencePiece's space marks, which turn
        into byte tokens either way and so cannot change the answer."""
        specials = sorted(
            (i for i, kind in enumerate(self.token_types) if kind in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED)),
            key=lambda i: -len(self.tokens[i]),
        )
        ids: list[int] = []
        position = 0
        while position < len(text):
            match = next((i for i in specials if text.startswith(self.tokens[i], position)), None)
            if match is not None:
                ids.append(match)
                position += len(self.tokens[match])
                continue
            ids += [self.id(f"<0x{byte:02X}>") for byte in text[position].encode()]
            position += 1
        return ids

    def forward(self, ids: list[int]) -> np.ndarray:
        """The logits after the last token, computed as llama.cpp computes a llama layer (only the
        last position's query is needed: with one layer, keys and values depend on tokens alone)."""
        w = self.weights
        x = w["token_embd.weight"][ids].astype(np.float64)
        h = _rms_norm(x, w["blk.0.attn_norm.weight"])
        positions = np.arange(len(ids))
        q = _rope((h[-1:] @ w["blk.0.attn_q.weight"].T).reshape(1, N_HEAD, HEAD_DIM), positions[-1:])
        k = _rope((h @ w["blk.0.attn_k.weight"].T).reshape(len(ids), N_HEAD, HEAD_DIM), positions)
        v = (h @ w["blk.0.attn_v.weight"].T).reshape(len(ids), N_HEAD, HEAD_DIM)
        scores = np.einsum("hd,khd->hk", q[0], k) / np.sqrt(HEAD_DIM)
        scores -= scores.max(axis=-1, keepdims=True)
        attention = np.exp(scores)
        attention /= attention.sum(axis=-1, keepdims=True)
        heads = np.einsum("hk,khd->hd", attention, v).reshape(N_EMBD)
        last = x[-1] + heads @ w["blk.0.attn_output.weight"].T
        h = _rms_norm(last, w["blk.0.ffn_norm.weight"])
        gate = h @ w["blk.0.ffn_gate.weight"].T
        last = last + (gate / (1 + np.exp(-gate)) * (h @ w["blk.0.ffn_up.weight"].T)) @ w["blk.0.ffn_down.weight"].T
        return _rms_norm(last, w["output_norm.weight"]) @ w["output.weight"].T

    def generate(self, prompt: str, max_tokens: int = 64) -> tuple[str, str, float]:
        """Greedy continuation of `prompt`: (text, finish reason, smallest winning margin)."""
        ids = self.tokenize(prompt)
        pieces: list[str] = []
        margin = np.inf
        for _ in range(max_tokens):
            logits = self.forward(ids)
            best, runner_up = np.argsort(logits)[::-1][:2]
            margin = min(margin, float(logits[best] - logits[runner_up]))
            if best == self.eos:
                return "".join(pieces), "stop", margin
            pieces.append(self.tokens[best])
            ids.append(int(best))
        return "".join(pieces), "length", margin


def _rms_norm(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * weight


def _rope(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """llama.cpp's "normal" RoPE: dimensions (2i, 2i+1) rotate by position · base^(-2i/head_dim)."""
    frequencies = ROPE_BASE ** (-np.arange(0, HEAD_DIM, 2) / HEAD_DIM)
    angle = positions[:, None, None] * frequencies
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[..., 1::2] = even * np.sin(angle) + odd * np.cos(angle)
    return out


def build() -> TinyModel:
    outputs = list(dict.fromkeys((*ANSWER_PIECES, *TOOL_ANSWER_PIECES, *TOOL_CALL_PIECES)))
    tokens = ["<unk>", *CONTROL_TOKENS, *outputs, *(f"<0x{byte:02X}>" for byte in range(256))]
    types = (
        [_TOKEN_TYPE_UNKNOWN]
        + [_TOKEN_TYPE_CONTROL] * len(CONTROL_TOKENS)
        + [_TOKEN_TYPE_USER_DEFINED] * len(outputs)
        + [_TOKEN_TYPE_BYTE] * 256
    )
    vocab = len(tokens)

    # Residual dimensions: one per output piece (its successor is fixed), one for "any other
    # token", one for each flag token (so the heads can find them), and the two flags.
    dim = {piece: n for n, piece in enumerate(outputs)}
    other, tools_token, response_token = len(outputs), len(outputs) + 1, len(outputs) + 2
    tools_flag, response_flag = len(outputs) + 3, len(outputs) + 4
    assert response_flag < N_EMBD

    embedding = np.zeros((vocab, N_EMBD), np.float32)
    for token_id, piece in enumerate(tokens):
        embedding[token_id, dim.get(piece, other)] = 1.0
    embedding[tokens.index(TOOLS)] = np.eye(N_EMBD)[tools_token]
    embedding[tokens.index(RESPONSE)] = np.eye(N_EMBD)[response_token]
    # Every embedding is a unit vector, so the first RMSNorm maps each to √N_EMBD along its axis.
    scale = np.sqrt(N_EMBD)

    wq = np.zeros((N_EMBD, N_EMBD), np.float32)
    wk = np.zeros((N_EMBD, N_EMBD), np.float32)
    wv = np.zeros((N_EMBD, N_EMBD), np.float32)
    wo = np.zeros((N_EMBD, N_EMBD), np.float32)
    for head, (token_axis, flag_axis) in enumerate(((tools_token, tools_flag), (response_token, response_flag))):
        base = head * HEAD_DIM
        wq[base + QK_DIM, :] = 1.0 / scale  # the same query from every token
        wk[base + QK_DIM, token_axis] = FLAG_SCORE * np.sqrt(HEAD_DIM) / scale
        wv[base, token_axis] = 1.0 / scale
        wo[flag_axis, base] = 1.0

    output = np.zeros((vocab, N_EMBD), np.float32)
    for sequence in (ANSWER_PIECES, TOOL_ANSWER_PIECES, TOOL_CALL_PIECES):
        for piece, successor in zip(sequence, (*sequence[1:], IM_END), strict=True):
            output[tokens.index(successor), dim[piece]] = NEXT
    hello, call, the = tokens.index(ANSWER_PIECES[0]), tokens.index(TOOL_CALL_PIECES[0]), tokens.index("The")
    for axis in (other, tools_token, response_token):
        output[hello, axis] = FIRST
        output[call, axis] = FIRST - FLAG
        output[the, axis] = FIRST - FLAG
    # With no flag: Hello. Tools: the call (+1 flag over Hello). A result: the answer, whether or
    # not tools are still offered (+2 over Hello, and the call drops below both).
    output[call, tools_flag] = 2 * FLAG
    output[call, response_flag] = -4 * FLAG
    output[the, response_flag] = 3 * FLAG

    ones = np.ones(N_EMBD, np.float32)
    zeros = np.zeros((N_FF, N_EMBD), np.float32)
    weights = {
        "token_embd.weight": embedding,
        "blk.0.attn_norm.weight": ones,
        "blk.0.attn_q.weight": wq,
        "blk.0.attn_k.weight": wk,
        "blk.0.attn_v.weight": wv,
        "blk.0.attn_output.weight": wo,
        "blk.0.ffn_norm.weight": ones.copy(),
        "blk.0.ffn_gate.weight": zeros,
        "blk.0.ffn_up.weight": zeros.copy(),
        "blk.0.ffn_down.weight": zeros.T.copy(),
        "output_norm.weight": ones.copy(),
        "output.weight": output,
    }
    return TinyModel(tokens, types, weights)


def write_gguf(path: Path, model: TinyModel | None = None, name: str = "tiny") -> Path:
    import gguf

    model = model or build()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(1)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(len(model.tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(model.tokens)
    writer.add_token_scores([0.0] * len(model.tokens))
    writer.add_token_types(model.token_types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(model.id(BOS))
    writer.add_eos_token_id(model.eos)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for tensor_name, array in model.weights.items():
        writer.add_tensor(tensor_name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tool_call_text() -> str:
    return "".join(TOOL_CALL_PIECES)


def tool_call_json() -> dict[str, object]:
    """The call the model writes between its tags, as llama.cpp parses it."""
    body = tool_call_text().removeprefix("<tool_call>").removesuffix("</tool_call>")
    return json.loads(body)


if __name__ == "__main__":
    import sys

    print(write_gguf(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")))
