"""What to generate and what to keep: single- vs multi-line, stops while streaming, clean-up.

Pure functions over strings, so they are tested without a model and applied after every token
by the engine (completions are short, so re-scanning the whole text each time is cheap).

- `decide_multiline`: mid-line after an expression means one line; right after a block opener
  (``:``, ``{``, ``(`` …) whose block is not written yet, or on an empty line in a body, a block.
- `truncate`: where a stream must end (stop strings, the end of the line, the end of the block
  when indentation falls below where it started, the next statement after the cursor's, a
  repeated line, the suffix's next line).
- `postprocess`: drop what duplicates the text after the cursor, keep brackets balanced, never
  return only whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from repotune.server.completion.brackets import (
    CLOSER_TO_OPENER,
    OPENERS,
    closed_by,
    code_chars,
    code_start,
    hash_comments_in,
    open_brackets,
)

if TYPE_CHECKING:
    from repotune.server.completion.request import CompletionRequest

# Line endings that open a block in common languages.
_BLOCK_OPENER = re.compile(
    r"(:|\{|\(|\[|=>|->|\bthen|\bdo|\bbegin|\belse|\bin)\s*(#.*|//.*)?$", re.IGNORECASE
)


def line_prefix_of(prefix: str) -> str:
    """Text before the cursor on the cursor's line."""
    return prefix.rsplit("\n", 1)[-1]


def line_suffix_of(suffix: str) -> str:
    """Text after the cursor on the cursor's line."""
    return suffix.split("\n", 1)[0]


def opens_a_line(prefix: str, suffix: str) -> bool:
    """The cursor at a line's very start with code right of it: an answer there is a line of
    its own, inserted above that code (HumanEval's whole-line holes are asked this way)."""
    return not line_prefix_of(prefix) and bool(line_suffix_of(suffix).strip())


def indent_width(line: str, tab_size: int = 4) -> int:
    width = 0
    for char in line:
        if char == " ":
            width += 1
        elif char == "\t":
            width += tab_size - width % tab_size
        else:
            break
    return width


def ends_with_block_opener(text: str) -> bool:
    return bool(_BLOCK_OPENER.search(text.rstrip()))


def decide_multiline(prefix: str, suffix: str, language: str | None = None) -> bool:
    """True when the cursor's syntax asks for a block rather than the rest of one line.

    - any text after the cursor on this line → one line (even closing brackets: ``f(|)``
      wants arguments, not a block);
    - cursor right after a line that opens a block (``def f():``, ``if x {``) → a block, unless
      the next line is already that block's body (indented deeper: the line is being edited, as
      Copilot's "empty block start" asks) or a space was typed after the opener (``x: ``,
      ``for k in ``, ``) -> ``: the line goes on; Enter would have started the block);
    - empty (whitespace-only) line → a block (a statement or more in the body);
    - otherwise (mid-line, after an expression) → one line.
    """
    before = line_prefix_of(prefix)
    after = line_suffix_of(suffix)
    if after.strip():
        return False
    if not before.strip():
        return True
    if before[-1].isspace() or not ends_with_block_opener(before):
        return False
    body = first_suffix_line(suffix)
    return not body or indent_width(body) <= indent_width(before)


# --------------------------------------------------------------------------- streaming stops


@dataclass(frozen=True)
class Cut:
    """Where to end a stream: `text` is what is kept; `done` says generation should stop."""

    text: str
    done: bool
    reason: str = ""


def _min_repeat_len(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 4 and any(ch.isalnum() for ch in stripped)


def suffix_lines(suffix: str, count: int) -> list[str]:
    """The first `count` non-empty lines after the cursor's line (what a block would run into),
    with their indentation: the same statement deeper or shallower is another line."""
    found: list[str] = []
    for line in suffix.split("\n")[1:]:
        if line.strip():
            found.append(line.rstrip())
            if len(found) == count:
                break
    return found


def first_suffix_line(suffix: str) -> str:
    """The first non-empty line after the cursor's line, "" where there is none."""
    return next(iter(suffix_lines(suffix, 1)), "")


def _same_line(line: str, other: str) -> bool:
    """The same text at the same indentation."""
    return line.strip() == other.strip() and indent_width(line) == indent_width(other)


REACHED_SUFFIX = "reached the suffix"
END_OF_LINE = "end of line"
NEXT_STATEMENT = "next statement"
STOP_STRING = "stop string"

# A line that goes on with the statement above it at the same indentation (a closing bracket
# does when the statement opened it: the bracket scan says so).
_CONTINUES_STATEMENT = re.compile(r"^\s*(?:else|elif|except|finally|catch)\b")


def _statement_ends(before: str, kept: list[str], line: str, hash_comments: bool) -> bool:
    """A line at the cursor's indentation after the cursor's line is finished: the next
    statement, unless a bracket the statement opened is still open or it goes on with it
    (``else:``)."""
    if _CONTINUES_STATEMENT.match(line):
        return False
    return not open_brackets(before + "\n".join(kept), hash_comments)


def truncate(
    text: str,
    *,
    prefix: str,
    suffix: str,
    multiline: bool,
    stop: tuple[str, ...] = (),
    final: bool = False,
    language: str | None = None,
) -> Cut:
    """Apply the stop rules to the text generated so far (`final`: all there will be).

    Only complete lines (followed by a newline) are judged for block rules, so a stream is never
    cut on a half-written line; the final call (after the last token) judges the rest. A
    completion that goes on with the cursor's line ends where that statement ends (Tabby's
    indentation scope): a later line must be deeper, inside open brackets, or go on with it.
    """
    for marker in stop:
        index = text.find(marker) if marker else -1
        if index >= 0:
            text = text[:index]
            return Cut(text, True, f"{STOP_STRING} {marker!r}")
    if not multiline:
        newline = text.find("\n")
        if newline >= 0:
            return Cut(text[:newline], True, END_OF_LINE)
        return Cut(text, False)

    before = line_prefix_of(prefix)
    continuing = bool(before.strip())  # the completion goes on with the cursor's line
    cursor_width = indent_width(before)
    lines = text.split("\n")
    complete = lines[:-1]  # each followed by "\n"
    base: int | None = None
    previous = ""
    if not continuing:
        # On an empty line the block starts at the cursor's column.
        base = indent_width(before + (lines[0] if lines else ""))
        prefix_lines = prefix.split("\n")[:-1]
        previous = next((ln.strip() for ln in reversed(prefix_lines) if ln.strip()), "")
    suffix_next, suffix_after = [*suffix_lines(suffix, 2), "", ""][:2]
    kept: list[str] = []
    for index, line in enumerate(complete):
        full = (before + line) if index == 0 else line
        if line.strip():
            width = indent_width(full)
            if base is None:
                base = width
                if index > 0 and width <= cursor_width:
                    return Cut("\n".join(kept), True, "no indented block after opener")
            elif width < base:
                return Cut("\n".join(kept), True, "end of block (dedent)")
            elif (
                index > 0
                and continuing
                and width <= cursor_width
                and _statement_ends(before, kept, line, hash_comments_in(language))
            ):
                return Cut("\n".join(kept), True, NEXT_STATEMENT)
            stripped = line.strip()
            if _min_repeat_len(line) and stripped == previous:
                return Cut("\n".join(kept), True, "repeated line")
            if suffix_next and _same_line(full, suffix_next) and _min_repeat_len(line):
                own = continuing or any(kept_line.strip() for kept_line in kept)
                if own or not suffix_after:
                    return Cut("\n".join(kept), True, REACHED_SUFFIX)
                # Nothing of its own yet: one line (`try:`) may start the model's own block;
                # it is the suffix when the next line is the suffix's too.
                going_on = next((ln for ln in complete[index + 1 :] if ln.strip()), None)
                if going_on is None and not final:
                    return Cut(text, False)
                if going_on is None or _same_line(going_on, suffix_after):
                    return Cut("\n".join(kept), True, REACHED_SUFFIX)
            previous = stripped
        kept.append(line)
    return Cut(text, False)


# --------------------------------------------------------------------------- clean-up


def _strip_partial_stop(text: str, stop: tuple[str, ...]) -> str:
    """Drop the start of a stop string left at the very end (e.g. ``<|rt`` when capped)."""
    for marker in stop:
        for size in range(min(len(marker), len(text)), 1, -1):
            if text.endswith(marker[:size]):
                return text[:-size]
    return text


# Lines around the cursor that the bracket scan reads (before it for open brackets, after it for
# the ones the suffix closes): enough for a call or a block, cheap on a huge file.
_BRACKET_SCAN_LINES = 60


def balance_brackets(
    completion: str,
    prefix: str,
    suffix: str,
    multiline: bool,
    language: str | None = None,
    *,
    runs_into_suffix: bool = False,
) -> str:
    """Cut a completion where it closes a bracket that is not open; close what it opened.

    Brackets opened in the prefix may be closed by the completion. Brackets the completion opens
    and leaves open are closed at its end, unless the text after the cursor already closes them;
    for a block, the completion is first cut back to the last line where its own brackets were
    balanced. A line ending by opening a bracket is left open (a single line always, a block
    where the model went on to write the suffix, `runs_into_suffix`, and the suffix closes it).
    """
    hash_comments = hash_comments_in(language)
    # The last lines hold the brackets still open, unless a docstring is open where they start.
    window = len(prefix) - len("\n".join(prefix.split("\n")[-_BRACKET_SCAN_LINES:]))
    outer = open_brackets(prefix[code_start(prefix, window, hash_comments) :], hash_comments)
    stack: list[tuple[str, bool]] = [(char, False) for char in outer]  # (bracket, own)
    balanced_at = 0  # end of the last line where the completion's own brackets were closed
    text = completion
    last_code = ""  # the kept text's last code character (a comment after it aside)
    for index, char in code_chars(completion, hash_comments):
        if char in OPENERS:
            stack.append((char, True))
        elif char in CLOSER_TO_OPENER:
            if not stack or stack[-1][0] != CLOSER_TO_OPENER[char]:
                text = completion[:index]
                break
            stack.pop()
        elif char == "\n" and not any(own for _, own in stack):
            balanced_at = index
        if not char.isspace():
            last_code = char
    own = [char for char, mine in stack if mine]
    if not own:
        return text
    if last_code in OPENERS and stack[-1][1]:
        # A line that ends by opening a bracket goes on below it (`field(` over several lines):
        # a single line always; a block that ran into the suffix where the suffix closes it.
        if not multiline:
            return text
        below = "\n".join(suffix.split("\n", _BRACKET_SCAN_LINES)[:_BRACKET_SCAN_LINES])
        if runs_into_suffix and closed_by(own, below, hash_comments):
            return text
    if multiline and balanced_at > 0 and text[:balanced_at].strip():
        return text[:balanced_at]
    closers = "".join(OPENERS[char] for char in reversed(own))
    provided = line_suffix_of(suffix).lstrip()
    while closers and provided and provided[0] == closers[0]:
        closers = closers[1:]
        provided = provided[1:].lstrip()
    return text.rstrip() + closers if closers else text


def drop_suffix_overlap(completion: str, suffix: str, multiline: bool) -> str:
    """Remove the part of a completion that repeats the text right after the cursor."""
    after = line_suffix_of(suffix).rstrip()
    if after.strip():
        first_line, newline, rest = completion.partition("\n")
        # The completion types the rest of the line itself: cut where it starts.
        if len(after.strip()) >= 2:
            position = first_line.find(after.strip())
            if position >= 0:
                return first_line[:position]
        # The completion ends with the start of the suffix (e.g. a closing bracket).
        for size in range(min(len(after), len(first_line)), 0, -1):
            if first_line.endswith(after[:size]):
                first_line = first_line[:-size]
                break
        completion = first_line + (newline + rest if multiline else "")
    if multiline:
        following = first_suffix_line(suffix)
        if following:
            lines = completion.split("\n")
            for index, line in enumerate(lines):
                if index and _same_line(line, following) and _min_repeat_len(line):
                    return "\n".join(lines[:index])
    return completion


# Characters around the cursor that the stop rules and post-processing see (they look at the
# cursor's line and a few dozen lines around it).
POSTPROCESS_WINDOW = 64 * 1024


def wants_block(request: CompletionRequest) -> bool:
    """`decide_multiline` at `request`'s cursor, on the text near it (a huge buffer costs
    nothing more)."""
    return decide_multiline(
        request.prefix[-POSTPROCESS_WINDOW:],
        request.suffix[:POSTPROCESS_WINDOW],
        request.language,
    )


# Why decoding can stop with a block cut mid-line (the endpoint's stream may end without a reason).
CAPS = frozenset({"time cap", "token cap", "stream ended"})


def postprocess(
    text: str,
    *,
    prefix: str,
    suffix: str,
    multiline: bool,
    stop: tuple[str, ...] = (),
    language: str | None = None,
    stopped_by: str = "",
) -> str | None:
    """The final completion, or None when nothing worth showing is left. `stopped_by`: why
    decoding stopped; a block stopped by one of the CAPS keeps whole lines only."""
    if multiline and stopped_by in CAPS and "\n" in text.strip("\n"):
        text = text[: text.rstrip("\n").rfind("\n")]
    cut = truncate(
        text,
        prefix=prefix,
        suffix=suffix,
        multiline=multiline,
        stop=stop,
        final=True,
        language=language,
    )
    text = _strip_partial_stop(cut.text, stop)
    if multiline and (not cut.done or cut.reason.startswith(STOP_STRING)):
        # The last (unterminated) line, ended by a stop string too, gets the block rules.
        cut = truncate(
            text + "\n", prefix=prefix, suffix=suffix, multiline=True, final=True, language=language
        )
        text = cut.text
    overlapping = text
    text = drop_suffix_overlap(text, suffix, multiline)
    runs_into_suffix = REACHED_SUFFIX in (cut.reason, stopped_by) or (
        multiline and text != overlapping
    )
    text = balance_brackets(
        text, prefix, suffix, multiline, language, runs_into_suffix=runs_into_suffix
    )
    lines = [line.rstrip() for line in text.split("\n")]
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    if not multiline:
        text = text.rstrip()
    if not text.strip():
        return None
    if stopped_by == END_OF_LINE and opens_a_line(prefix, suffix):
        # The model ended its line: the code right of the cursor keeps a line of its own
        # (without a line break, the answer goes on into that code, as after Enter mid-line).
        text += "\n"
    return text
