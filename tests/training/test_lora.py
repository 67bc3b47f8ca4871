"""Which fine-tunes recompute activations (gradient checkpointing): pure settings logic."""

from __future__ import annotations

import pytest
from repotune.server.config import SettingsError, load_settings
from repotune.training.lora import uses_gradient_checkpointing


@pytest.mark.parametrize(
    ("value", "on_cpu", "expected"),
    [
        ("auto", True, False),  # the CPU's limit is compute: no recomputation
        ("auto", False, True),  # an accelerator's limit is memory
        (True, True, True),
        (False, False, False),
    ],
)
def test_gradient_checkpointing_auto_is_off_on_the_cpu_only(
    value: object, on_cpu: bool, expected: bool
) -> None:
    train = load_settings(None, {"train": {"gradient_checkpointing": value}}).train
    assert uses_gradient_checkpointing(train, on_cpu) is expected


def test_gradient_checkpointing_defaults_to_auto_and_rejects_other_words() -> None:
    assert load_settings(None).train.gradient_checkpointing == "auto"
    with pytest.raises(SettingsError, match="gradient_checkpointing"):
        load_settings(None, {"train": {"gradient_checkpointing": "sometimes"}})
