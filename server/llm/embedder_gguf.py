"""Convert the packaged all-MiniLM-L6-v2 (safetensors + WordPiece vocab) into a GGUF embedder.

Why: one runtime (llama.cpp) then serves both models and the server needs no torch. This mirrors
llama.cpp's own `convert_hf_to_gguf.py` BertModel path, restricted to what MiniLM needs, using
only the `gguf` and `safetensors` (numpy) packages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

# The number of tokens sentence-transformers feeds all-MiniLM-L6-v2 (sentence_bert_config.json).
MAX_SEQ_TOKENS = 256


def _phantom_space(token: str) -> str:
    """llama.cpp's WPM tokenizer marks word starts with U+2581 instead of marking suffixes."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _read_vocab(model_dir: Path) -> tuple[list[str], list[int], dict[str, int]]:
    tokens = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    token_types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    specials: dict[str, int] = {}
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        added = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens", [])
        for entry in added:
            if entry.get("special"):
                token_types[entry["id"]] = int(gguf.TokenType.CONTROL)
                specials[entry["content"]] = entry["id"]
    for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        if name not in specials and name in tokens:
            specials[name] = tokens.index(name)
            token_types[specials[name]] = int(gguf.TokenType.CONTROL)
    return [_phantom_space(t) for t in tokens], token_types, specials


def _max_seq_tokens(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", MAX_SEQ_TOKENS))
    return MAX_SEQ_TOKENS


def convert_minilm_to_gguf(model_dir: Path, output: Path, dtype: str = "f16") -> Path:
    """Write a llama.cpp BERT embedding GGUF; atomic (temp file + rename)."""
    if dtype not in ("f16", "f32"):
        raise ValueError("embedder GGUF must be f16 or f32 (Q4 loses too much)")
    hparams = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if hparams.get("model_type") != "bert":
        raise ValueError(f"{model_dir}: expected a BERT model, got {hparams.get('model_type')!r}")
    n_layers = int(hparams["num_hidden_layers"])
    arch = gguf.MODEL_ARCH.BERT
    name_map = gguf.get_tensor_name_map(arch, n_layers)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(int(hparams["max_position_embeddings"]))
    writer.add_embedding_length(int(hparams["hidden_size"]))
    writer.add_feed_forward_length(int(hparams["intermediate_size"]))
    writer.add_block_count(n_layers)
    writer.add_head_count(int(hparams["num_attention_heads"]))
    writer.add_layer_norm_eps(float(hparams["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else 0)

    tokens, token_types, specials = _read_vocab(model_dir)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("bert-bge")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_type_count(int(hparams.get("type_vocab_size", 2)))
    writer.add_bool("tokenizer.ggml.lowercase", True)
    writer.add_uint32("repotune.max_seq_tokens", _max_seq_tokens(model_dir))
    writer.add_bos_token_id(specials["[CLS]"])
    writer.add_eos_token_id(specials["[SEP]"])
    writer.add_sep_token_id(specials["[SEP]"])
    writer.add_unk_token_id(specials["[UNK]"])
    writer.add_pad_token_id(specials["[PAD]"])
    writer.add_mask_token_id(specials["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)

    tensors = load_file(str(model_dir / "model.safetensors"))
    for name in sorted(tensors):
        data = tensors[name]
        hf_name = name.removeprefix("bert.")
        if hf_name.endswith(".gamma"):
            hf_name = hf_name[: -len(".gamma")] + ".weight"
        if hf_name.endswith(".beta"):
            hf_name = hf_name[: -len(".beta")] + ".bias"
        if hf_name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
            continue
        new_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ValueError(f"{model_dir}: cannot map tensor {name!r} to GGUF")
        data = data.astype(np.float32)
        # token_types is added to the activations directly, and ggml cannot add f16 to f32.
        if dtype == "f16" and data.ndim == 2 and not new_name.startswith("token_types"):
            data = data.astype(np.float16)
        writer.add_tensor(new_name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, output)
    return output
