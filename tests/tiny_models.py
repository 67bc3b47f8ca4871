"""A tiny llama-architecture GGUF built here with the gguf package: random weights, a small
SentencePiece-style vocabulary (byte fallback) and, optionally, a chat template. llama.cpp loads
and runs it in milliseconds; its text is noise, so tests use it for what the engine sends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# ChatML, the layout of many instruction-tuned models.
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
BOS_TOKEN, EOS_TOKEN = "<s>", "<|im_end|>"


def write_tiny_llama(path: Path, chat_template: str | None = CHATML_TEMPLATE) -> Path:
    import gguf

    rng = np.random.default_rng(0)
    kinds = gguf.TokenType
    tokens = [*SPECIAL_TOKENS, *(f"<0x{i:02X}>" for i in range(256))]
    types = [kinds.UNKNOWN, *[kinds.CONTROL] * 4, *[kinds.BYTE] * 256]
    pieces = [
        "\u2581",
        *(chr(c) for c in range(33, 127)),
        *("\u2581" + chr(c) for c in range(97, 123)),
    ]
    tokens += pieces
    types += [kinds.NORMAL] * len(pieces)
    scores = [0.0] * (len(tokens) - len(pieces)) + [-float(i) for i in range(len(pieces))]
    n_vocab, n_embd, n_ff, n_head = len(tokens), 32, 64, 2

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(1024)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(tokens.index(BOS_TOKEN))
    writer.add_eos_token_id(tokens.index(EOS_TOKEN))
    writer.add_add_bos_token(True)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def random(name: str, *shape: int) -> None:
        writer.add_tensor(name, (0.02 * rng.standard_normal(shape)).astype(np.float32))

    def ones(name: str) -> None:
        writer.add_tensor(name, np.ones(n_embd, dtype=np.float32))

    random("token_embd.weight", n_vocab, n_embd)
    ones("output_norm.weight")
    random("output.weight", n_vocab, n_embd)
    ones("blk.0.attn_norm.weight")
    ones("blk.0.ffn_norm.weight")
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        random(f"blk.0.{name}.weight", n_embd, n_embd)
    random("blk.0.ffn_gate.weight", n_ff, n_embd)
    random("blk.0.ffn_up.weight", n_ff, n_embd)
    random("blk.0.ffn_down.weight", n_embd, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_lora(
    path: Path,
    pairs: dict[str, tuple[int, int, int]],
    architecture: str = "gemma3",
    kind: str = "adapter",
) -> Path:
    """A LoRA GGUF as `repotune train export` writes one: for each adapted weight name,
    (rows out, columns in, rank) gives `<name>.lora_a` (rank x in) and `<name>.lora_b`
    (out x rank); a rank of 0 leaves lora_b out (half a pair). Zero weights."""
    import gguf

    writer = gguf.GGUFWriter(path, architecture)
    writer.add_type(kind)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 16.0)
    for name, (rows, columns, rank) in pairs.items():
        writer.add_tensor(f"{name}.lora_a", np.zeros((max(rank, 1), columns), dtype=np.float32))
        if rank:
            writer.add_tensor(f"{name}.lora_b", np.zeros((rows, rank), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
