"""Examples to token batches: the engine's tokenization with the prompt masked out of the loss,
micro-batches of similar length in a seeded order, and padding."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.server.completion.formats import get_format
from repotune.server.config import Settings
from repotune.server.llm.healing import Vocabulary, heal
from repotune.training.base import BaseWeights, TrainError

IGNORE_INDEX = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def length(self) -> int:
        return len(self.input_ids)


def read_examples(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file of examples (schema in data.build); a clear error on bad lines."""
    if not path.is_file():
        raise TrainError(f"dataset file not found: {path}")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise TrainError(f"{path}:{number}: an example needs 'prompt' and 'completion'")
            if not isinstance(item.get("completion"), str):
                raise TrainError(f"{path}:{number}: an example needs 'prompt' and 'completion'")
            examples.append(item)
    return examples


def encode_example(
    tokenizer: Any,
    prompt: str,
    completion: str,
    max_tokens: int,
    segments: Sequence[Sequence[Any]] | None = None,
    special_markers: bool = False,
    special_text: bool = False,
    vocabulary: Vocabulary | None = None,
) -> Encoded | None:
    """Tokenize as the engine does (BOS, each prompt segment on its own, then the completion
    as generated tokens) and mask the prompt out of the loss.

    Text that looks like a special token (`<eos>` in a chat-template string) is text to the
    engine's FIM prompts, which parse special tokens only in format markers (when
    `special_markers`), so it is split as text here too; question prompts go through
    llama-cpp-python's completion calls, which parse them everywhere (`special_text`).
    Over-long examples keep their completion and lose the start of the prompt (after BOS), which
    is the far end of the context: what a token budget would cut at serving time too.
    With a `vocabulary` (the generator's, serving with token healing) the prompt is healed as
    the engine heals it: the tokens before the cursor that healing drops move to the start of
    the completion, which is then tokenized as one text, as the model would spell it.
    """

    def ids(text: str, special: bool = False) -> list[int]:
        out = tokenizer(text, add_special_tokens=False, split_special_tokens=not special)
        return list(out["input_ids"])

    prompt_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    cursor_end = 0
    for text, marker, *cursor in segments or [(prompt, False)]:
        prompt_ids += ids(text, special_text or (bool(marker) and special_markers))
        if cursor and cursor[0] and text:
            cursor_end = len(prompt_ids)
    if vocabulary is not None and cursor_end:
        healed_ids, healing = heal(prompt_ids, cursor_end, vocabulary)
        try:
            completion = healing.text.decode("utf-8") + completion
            prompt_ids = healed_ids
        except UnicodeDecodeError:  # a byte token's half of a character: left as it is
            pass
    completion_ids = ids(completion, special_text)
    if not completion_ids:
        return None
    if len(completion_ids) >= max_tokens // 2:
        completion_ids = completion_ids[: max_tokens // 2]
    room = max_tokens - len(completion_ids)
    if len(prompt_ids) > room:
        bos = prompt_ids[:1] if prompt_ids[:1] == [tokenizer.bos_token_id] else []
        prompt_ids = bos + prompt_ids[len(prompt_ids) - (room - len(bos)) :]
    input_ids = prompt_ids + completion_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    return Encoded(input_ids, labels)


def healing_vocabulary(base: BaseWeights, settings: Settings) -> Vocabulary | None:
    """The base GGUF's token pieces when the engine serves with token healing (training then
    heals prompts the same way); None otherwise, or for a base that did not come from a GGUF."""
    if not settings.completion.token_healing or base.gguf_path is None:
        return None
    from repotune.server.llm.runtime import load_vocabulary

    llm = load_vocabulary(base.gguf_path)
    try:
        return Vocabulary.of(llm)
    finally:
        llm.close()


def encode_all(
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    max_tokens: int,
    vocabulary: Vocabulary | None = None,
) -> list[Encoded]:
    """Every example encoded (`encode_example`); `vocabulary`: heal completion prompts."""
    encoded = []
    for item in examples:
        name = item.get("format", "repotune")
        question = name.startswith("ask_")  # teacher pairs: the server's question prompt
        one = encode_example(
            tokenizer,
            item["prompt"],
            item["completion"],
            max_tokens,
            item.get("segments"),
            special_markers=not question and get_format(name).special,
            special_text=question,
            vocabulary=None if question else vocabulary,
        )
        if one is not None:
            encoded.append(one)
    return encoded


def bucketed_batches(
    lengths: Sequence[int], micro_batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Micro-batches of similar length, in a seeded order that is the same on every resume."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)  # ties broken randomly, then sorted by length within windows
    window = micro_batch_size * 16
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(
            chunk[i : i + micro_batch_size] for i in range(0, len(chunk), micro_batch_size)
        )
    rng.shuffle(batches)
    return batches


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(item.length for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, : item.length] = torch.tensor(item.input_ids)
        labels[row, : item.length] = torch.tensor(item.labels)
        mask[row, : item.length] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
