"""What an evaluation run is: its conditions, comparisons, fixed completion settings and options."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.config import Settings, SettingsError, load_settings, settings_with
from repotune.training.eval.corpora import EvalError
from repotune.training.eval.tasks import KINDS

# name -> (which adapter: none | default | own | other, with retrieved context)
CONDITIONS: dict[str, tuple[str, bool]] = {
    "base": ("none", False),
    "base+ctx": ("none", True),
    "default": ("default", False),
    "default+ctx": ("default", True),
    "repo+ctx": ("own", True),
    "repo": ("own", False),
    "other-repo+ctx": ("other", True),
    "default+prev-ctx": ("default", True),
}

# Conditions whose context is the previous task's snippets, not the task's own: the first
# suggestion at a new place under `completion.context_ring`, which keeps the block it had.
PREVIOUS_CONTEXT = frozenset({"default+prev-ctx"})


ALIASES = {"ft+ctx": "repo+ctx", "ft": "repo", "other+ctx": "other-repo+ctx"}
DEFAULT_CONDITIONS = ["base", "base+ctx", "default", "default+ctx", "repo+ctx", "other-repo+ctx"]


COMPARISONS = [
    ("default+ctx", "base+ctx"),
    ("default+ctx", "base"),
    ("default+ctx", "default"),
    ("repo+ctx", "default+ctx"),
    ("repo+ctx", "other-repo+ctx"),
    ("repo+ctx", "base+ctx"),
    ("base+ctx", "base"),
    ("default", "base"),
    ("repo+ctx", "repo"),
    ("default+prev-ctx", "default+ctx"),
]


SCORED = ("exact_match", "shown_exact", "edit_similarity", "identifier_em", "identifier_f1", "hit")
TARGET_EM_GAIN = 0.15  # default+ctx over the better of base and base+ctx (issue #13)


# What evaluation fixes in the completion settings (see the module docstring).
EVAL_COMPLETION = {
    "cache_size": 0,
    "sticky_context": False,
    "prompt_lookup": False,
    "first_line_first": False,  # a block task is scored on the whole block
    "warm_files": 0,
    "temperature": 0.0,
    "time_cap_ms": 120_000,
}


INDEX_TIMEOUT_S = 3600.0
LOAD_TIMEOUT_S = 600.0


@dataclass
class EvalConfig:
    repos: list[str]
    conditions: list[str] = field(default_factory=lambda: list(DEFAULT_CONDITIONS))
    counts: dict[str, int] = field(
        default_factory=lambda: {"line": 60, "midword": 40, "span": 20, "api": 20, "question": 30}
    )
    seed: int = 1234
    train_steps: int = 40
    time_budget_min: float | None = None  # per fine-tune, on top of train_steps
    per_kind: int = 1
    adapters: dict[str, str] = field(default_factory=dict)
    parity: bool = True
    bootstrap: int = 2000
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    progress: bool = True
    command: str = ""


def log_progress(config: EvalConfig, message: str) -> None:
    if config.progress:
        print(f"[eval {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def eval_completion(overrides: dict[str, Any]) -> dict[str, Any]:
    """The evaluation's fixed completion settings; quick start off unless the command line
    sets it ("auto" would score the short prompt's answers on a machine it finds slow)."""
    fixed = dict(EVAL_COMPLETION)
    if "quick_start" not in (overrides.get("completion") or {}):
        fixed["quick_start"] = False
    return fixed


def eval_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the command line, with the evaluation's fixed completion settings and a
    training sequence length that matches the served prompt budget (unless given)."""
    try:
        settings = load_settings(None, overrides, overrides_source="command line")
        fixed: dict[str, Any] = {"completion": eval_completion(overrides)}
        if "max_seq_tokens" not in overrides.get("train", {}):
            comp = settings.completion
            fixed["train"] = {
                "max_seq_tokens": comp.prompt_budget_tokens + 64 + comp.max_tokens_block
            }
        return settings_with(settings, fixed, "evaluation")
    except SettingsError as exc:
        raise EvalError(str(exc)) from None


def with_adapter(settings: Settings, adapter: str) -> Settings:
    """`adapter`: "none" (the bare base), "default" (the shipped one) or a GGUF path."""
    return settings_with(settings, {"model": {"adapter": adapter}}, "evaluation")


def validate(config: EvalConfig) -> None:
    """Everything that can be checked before any download or training."""
    if not config.repos:
        raise EvalError("give at least one --repo (a folder, NAME==VERSION or npm:NAME@VERSION)")
    config.conditions = [ALIASES.get(c, c) for c in config.conditions]
    unknown = [c for c in config.conditions if c not in CONDITIONS]
    if unknown:
        raise EvalError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    if config.time_budget_min is not None and not config.time_budget_min > 0:  # nan too
        raise EvalError("--time-budget must be a positive number of minutes")
    if config.train_steps < 1:
        raise EvalError("--train-steps must be at least 1")
    if config.bootstrap < 1:  # found at the end otherwise, after the fine-tunes and tasks
        raise EvalError("--bootstrap must be at least 1")
    if not any(config.counts.get(k, 0) > 0 for k in (*KINDS, "question")):
        raise EvalError(
            "no tasks asked for: set --line-tasks, --span-tasks, --api-tasks or --question-tasks"
        )
    for label, path in config.adapters.items():
        if not Path(path).expanduser().is_file():
            raise EvalError(f"adapter for '{label}' not found: {path}")
