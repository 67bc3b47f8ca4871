"""Cutting the text around the cursor to a token budget at line boundaries, looking only at a
window of it (a huge file or line costs no more than a small one)."""

from __future__ import annotations

from repotune.server.completion.tokens import CountTokens

# The prefix window's first line moves in steps of this many lines (see truncate_prefix).
PREFIX_LINE_STEP = 8


def _cut_to_tokens_right(text: str, budget: int, count: CountTokens) -> str:
    """The longest tail of one line that fits (only for a single over-long line)."""
    if budget <= 0:
        return ""
    low, high = 0, len(text)
    while low < high:  # smallest start index whose tail fits
        mid = (low + high) // 2
        if count(text[mid:]) <= budget:
            high = mid
        else:
            low = mid + 1
    return text[low:]


def _cut_to_tokens_left(text: str, budget: int, count: CountTokens) -> str:
    if budget <= 0:
        return ""
    low, high = 0, len(text)
    while low < high:  # largest end index whose head fits
        mid = (low + high + 1) // 2
        if count(text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low]


# A token is rarely longer than this many characters: a window of budget x this holds what fits
# the budget, and tokenizing it costs the same whatever the length of the file or of its lines
# (a 20 MB minified line used to be tokenized whole, again and again).
MAX_CHARS_PER_TOKEN = 16


def prefix_window(prefix: str, budget: int) -> tuple[str, int]:
    """The end of `prefix` that can matter for `budget` tokens, from a line start when there is
    one in reach; returns (window, lines before it)."""
    limit = max(budget, 1) * MAX_CHARS_PER_TOKEN
    if len(prefix) <= limit:
        return prefix, 0
    cut = len(prefix) - limit
    newline = prefix.find("\n", cut)
    start = newline + 1 if newline >= 0 else cut
    return prefix[start:], prefix.count("\n", 0, start)


def suffix_window(suffix: str, budget: int) -> str:
    """The start of `suffix` that can matter for `budget` tokens, ending at a line end when
    there is one in reach."""
    limit = max(budget, 1) * MAX_CHARS_PER_TOKEN
    if len(suffix) <= limit:
        return suffix
    newline = suffix.rfind("\n", 0, limit)
    return suffix[: newline if newline >= 0 else limit]


def clip_to_tokens(text: str, budget: int, count: CountTokens) -> str:
    """The longest head of `text` within `budget` tokens (a question too long for the context);
    only a window of budget x MAX_CHARS_PER_TOKEN characters is ever tokenized."""
    head = (
        suffix_window(text, budget)
        if "\n" in text
        else text[: max(budget, 1) * MAX_CHARS_PER_TOKEN]
    )
    if count(head) <= budget:
        return head
    return _cut_to_tokens_left(head, budget, count)


def truncate_prefix(
    prefix: str, budget: int, count: CountTokens, quantum: int = 1
) -> tuple[str, int, int]:
    """Keep the last whole lines of `prefix` that fit `budget` (the cursor's line always).

    `quantum` > 1 keeps the window's first line still while the cursor moves on, so llama.cpp
    re-evaluates the last few tokens instead of the whole prefix: the cursor line's share is
    reserved in steps of `quantum` tokens (typing on one line), and the first kept line is the
    first line number divisible by PREFIX_LINE_STEP that fits (typing on into the next lines).
    Only `prefix_window` is tokenized. Returns (kept text, tokens counted, lines dropped).
    """
    window, base = prefix_window(prefix, budget)
    lines = window.split("\n")
    current = lines[-1]
    used = count(current) if current else 0
    if used > budget:
        current = _cut_to_tokens_right(current, budget, count)
        return current, count(current) if current else 0, base + len(lines) - 1
    reserve = min(budget, -(-max(used, 1) // quantum) * quantum) if quantum > 1 else used
    spent = reserve
    start = len(lines) - 1  # index of the first kept line (in the window)
    costs: list[int] = []
    for line in reversed(lines[:-1]):
        cost = count(line + "\n")
        if spent + cost > budget:
            break
        spent += cost
        costs.append(cost)
        start -= 1
    if quantum > 1 and base + start > 0:
        # Line numbers of the whole prefix, so the first kept line stays put as the window moves.
        stable_line = -(-(base + start) // PREFIX_LINE_STEP) * PREFIX_LINE_STEP
        stable = min(len(lines) - 1, stable_line - base)
        costs = costs[: len(costs) - (stable - start)]  # costs run from the cursor upwards
        start = stable
    used += sum(costs)
    return "\n".join(lines[start:]), used, base + start


def truncate_suffix(suffix: str, budget: int, count: CountTokens) -> tuple[str, int, int]:
    """Keep the first whole lines of `suffix` that fit `budget` (the cursor's line first)."""
    if not suffix or budget <= 0:
        return "", 0, suffix.count("\n") + (1 if suffix else 0)
    total_lines = suffix.count("\n") + 1
    lines = suffix_window(suffix, budget).split("\n")
    first = lines[0]
    used = count(first) if first else 0
    if used > budget:
        first = _cut_to_tokens_left(first, budget, count)
        return first, count(first) if first else 0, total_lines - 1
    kept = [first]
    for line in lines[1:]:
        cost = count("\n" + line)
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept), used, total_lines - len(kept)
