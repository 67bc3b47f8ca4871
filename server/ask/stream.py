"""How a caller watches an answer grow: a callback that gets the answer so far."""

from __future__ import annotations

from collections.abc import Callable

OnText = Callable[[str], None]


def ignore_text(text: str) -> None:
    """The default OnText: nobody watches the answer grow."""
