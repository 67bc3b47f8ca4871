"""When an automatic (as-you-type) request deserves no completion at all.

Two situations where a suggestion is noise that still costs a generation: right after the user
deleted text (backspace, delete, cut: a ghost text would re-insert what was just removed), and in
the middle of an existing line (llama.vscode skips auto-trigger when more than 8 characters sit
right of the cursor). An explicit request (the editor's "trigger inline suggestion" command) is
always answered.
"""

from __future__ import annotations

from repotune.server.config import CompletionSettings

# Characters after the cursor that a completion is expected to fit before, not replace.
SKIPPABLE_SUFFIX_CHARS = ")]}>\"'`;:,. \t"


def auto_trigger_skip(
    line_suffix: str, after_deletion: bool, settings: CompletionSettings
) -> str | None:
    """Why an automatic request should get no completion, or None to go ahead."""
    if after_deletion and settings.auto_skip_after_deletion:
        return "after_deletion"
    if len(line_suffix.strip(SKIPPABLE_SUFFIX_CHARS)) > settings.auto_max_chars_right:
        return "mid_line"
    return None


def line_suffix_at(text: str, offset: int) -> str:
    """The rest of the cursor's line."""
    end = text.find("\n", offset)
    return text[offset:] if end < 0 else text[offset:end]
