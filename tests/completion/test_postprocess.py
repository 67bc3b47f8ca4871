"""Single- vs multi-line decisions, streaming stops and the final clean-up (pure logic)."""

from __future__ import annotations

import pytest
from repotune.server.completion.postprocess import (
    balance_brackets,
    decide_multiline,
    drop_suffix_overlap,
    opens_a_line,
    postprocess,
    truncate,
)

BODY_PREFIX = "def f(x):\n    y = x + 1\n    "
BODY_SUFFIX = "\n    return y\n"


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    ("prefix", "suffix", "multiline"),
    [
        ("x = compute(a, ", ")\n", False),  # mid-line, text after the cursor
        ("    total = price * ", "\n", False),  # after an operator, end of line
        ("    result = obj.method()", "\n", False),  # after a finished expression
        ("    values = [1, 2, 3]", "", False),
        ("def f(x):", "\n", True),  # end of a block opener
        ("def f(x):", "\n\ndef g():\n    pass\n", True),  # the next line is another block
        ("    if ready:", "\n    go()\n", True),  # inserted above code at its own depth
        ("def f(x):", "\n    pass\n", False),  # its body is written: the line is edited
        ("    for key in ", "\n        use(key)\n", False),  # after a space the line goes on
        ("    name: ", "\n    size: int\n", False),  # an annotation, not a block
        ("def f(x) -> ", "\n", False),
        ("    if ready:", "\n", True),
        ("function g() {", "\n}\n", True),
        ("    for (let i = 0; i < n; i++) {", "\n", True),
        (BODY_PREFIX, BODY_SUFFIX, True),  # empty line in a body
        ("", "", True),  # empty file
        ("    x = foo(", ")\n", False),  # closing bracket right after: arguments, one line
        ("def f(x):  # note", "\n", True),  # opener followed by a comment
    ],
)
def test_decide_multiline(prefix: str, suffix: str, multiline: bool) -> None:
    assert decide_multiline(prefix, suffix, "python") is multiline


# --------------------------------------------------------------------------- streaming stops


def test_single_line_stops_at_newline() -> None:
    cut = truncate("a + b\nnext()", prefix="x = ", suffix="", multiline=False)
    assert cut.text == "a + b" and cut.done
    assert not truncate("a + b", prefix="x = ", suffix="", multiline=False).done


def test_stop_strings_end_the_stream() -> None:
    cut = truncate("value<|rt_end|>junk", prefix="", suffix="", multiline=True, stop=("<|rt_",))
    assert cut.text == "value" and cut.done


def test_dedent_ends_the_block() -> None:
    generated = "z = y * 2\n    w = z\n\ndef g():\n    pass\n"
    cut = truncate(generated, prefix=BODY_PREFIX, suffix="", multiline=True)
    assert cut.done and cut.reason == "end of block (dedent)"
    assert cut.text == "z = y * 2\n    w = z\n"


def test_block_after_opener_ends_when_indentation_returns() -> None:
    generated = "\n    return x * 2\n\nprint(f(3))\n"
    cut = truncate(generated, prefix="def f(x):", suffix="", multiline=True)
    assert cut.done
    assert cut.text == "\n    return x * 2\n"


def test_opener_without_indented_body_stops() -> None:
    cut = truncate("\nprint(1)\n", prefix="def f(x):", suffix="", multiline=True)
    assert cut.done and cut.text == ""


def test_repeated_line_stops() -> None:
    generated = "items.append(x)\n    items.append(x)\n    items.append(x)\n"
    cut = truncate(generated, prefix=BODY_PREFIX, suffix="", multiline=True)
    assert cut.done and cut.reason == "repeated line"
    assert cut.text == "items.append(x)"


def test_repeating_the_line_above_the_cursor_stops() -> None:
    cut = truncate("y = x + 1\n", prefix=BODY_PREFIX, suffix="", multiline=True)
    assert cut.done and cut.text == ""


def test_short_closing_lines_may_repeat() -> None:
    generated = "if a:\n        if b:\n            g()\n"
    prefix = "function h() {\n  "
    cut = truncate("g(() => {\n  })\n  })\n", prefix=prefix, suffix="", multiline=True)
    assert not cut.done  # "})" twice is nesting, not a loop
    assert not truncate(generated, prefix=BODY_PREFIX, suffix="", multiline=True).done


def test_block_stops_where_the_suffix_begins() -> None:
    cut = truncate("z = y\n    return y\n", prefix=BODY_PREFIX, suffix=BODY_SUFFIX, multiline=True)
    assert cut.done and cut.reason == "reached the suffix"
    assert cut.text == "z = y"
    # The same statement at another depth is a line of the block, not the suffix.
    nested = "if z:\n        return y\n    z = 0\n"
    cut = truncate(nested, prefix=BODY_PREFIX, suffix=BODY_SUFFIX, multiline=True)
    assert not cut.done
    assert drop_suffix_overlap(nested.rstrip(), BODY_SUFFIX, multiline=True) == nested.rstrip()
    assert drop_suffix_overlap("z = y\n    return y", BODY_SUFFIX, multiline=True) == "z = y"
    # The cursor's line, finished as the very next line of the file, is that line again.
    prefix, suffix = "    res.off('d", "\n    res.off('drain')\n"
    cut = truncate("rain')\n    res.on('x')\n", prefix=prefix, suffix=suffix, multiline=True)
    assert cut.done and cut.reason == "reached the suffix" and cut.text == ""


def test_a_finished_line_ends_at_the_next_statement() -> None:
    """Going on with the cursor's line, a later line must be deeper, inside a bracket still
    open, or go on with that statement; a line at the cursor's depth is the next statement."""
    prefix = "def f(x):\n    items = compute("
    cut = truncate("x)\n    total = 0\n", prefix=prefix, suffix="", multiline=True)
    assert cut.done and cut.reason == "next statement" and cut.text == "x)"
    # Arguments over lines, the closing bracket at the statement's depth: one statement.
    generated = "\n        x,\n        y,\n    )\n    total = 0\n"
    cut = truncate(generated, prefix=prefix, suffix="", multiline=True)
    assert cut.done and cut.text.endswith("y,")  # the block's depth ends it, as before
    generated = "x,\n    y)\n    total = 0\n"
    cut = truncate(generated, prefix=prefix, suffix="", multiline=True)
    assert cut.done and cut.reason == "next statement" and cut.text == "x,\n    y)"
    # A block opened by the first line, its `else:` and the body: one statement, then the next.
    generated = "ready:\n        go()\n    else:\n        wait()\n    done()\n"
    cut = truncate(generated, prefix="def f(x):\n    if ", suffix="", multiline=True)
    assert cut.text == "ready:\n        go()\n    else:\n        wait()"
    # A brace block closed at the statement's depth, `} else {` included.
    generated = " (ok) {\n    go();\n  } else {\n    stop();\n  }\n  next();\n"
    cut = truncate(generated, prefix="function f() {\n  if", suffix="", multiline=True)
    assert cut.reason == "next statement" and cut.text.endswith("stop();\n  }")
    # A closing bracket the statement did not open closes an enclosing block: not this line's.
    cut = truncate(
        "index, 1);\n    }\n", prefix="  if (x) {\n    a.splice(", suffix="", multiline=True
    )
    assert cut.reason == "next statement" and cut.text == "index, 1);"
    # A line ended by a stop string is judged like the others.
    text = postprocess(
        "name) from None\n    after()<|rt_end|>",
        prefix="    if x:\n        raise Error(",
        suffix="\n",
        multiline=True,
        stop=("<|rt_",),
    )
    assert text == "name) from None"
    # A `#` starts a comment only where the language has it.
    cut = truncate("a) # (\n  b()\n", prefix="  f(", suffix="", multiline=True)
    assert cut.text == "a) # ("
    cut = truncate("a) # (\n  b()\n", prefix="  f(", suffix="", multiline=True, language="go")
    assert not cut.done


def test_half_written_line_is_not_judged() -> None:
    cut = truncate("z = y\ndef", prefix=BODY_PREFIX, suffix="", multiline=True)
    assert not cut.done  # "def" may become a deeper line; wait for its newline


# --------------------------------------------------------------------------- clean-up


def test_suffix_overlap_closing_bracket_is_dropped() -> None:
    assert drop_suffix_overlap("b, c)", ")\n", multiline=False) == "b, c"
    assert postprocess("b, c)", prefix="f(a, ", suffix=")\n", multiline=False) == "b, c"


def test_completion_that_retypes_the_rest_of_the_line_is_cut() -> None:
    text = postprocess(
        "key, default) or fallback", prefix="v = d.get(", suffix=") or fallback\n", multiline=False
    )
    assert text == "key, default"


def test_a_line_opened_above_code_keeps_that_code_on_its_own_line() -> None:
    """At a line's start with code right of the cursor (HumanEval's whole-line holes), a line
    the model ended is inserted with its line break; one it did not end (the answer goes on
    into the code, as after Enter mid-line) is inserted as it is; a line that only retypes the
    code leaves nothing."""
    prefix, suffix = "def f(x):\n", "    return y\n"
    assert opens_a_line(prefix, suffix) and opens_a_line("", "x = 1\n")
    assert not opens_a_line("def f(x):\n    ", "return y\n")  # after the indentation
    assert not opens_a_line(prefix, "\n    return y\n")  # an empty line
    shown = postprocess(
        "    y = x + 1", prefix=prefix, suffix=suffix, multiline=False, stopped_by="end of line"
    )
    assert shown == "    y = x + 1\n"
    joined = postprocess("foo(", prefix="x = 1\n", suffix="bar)\n", multiline=False)
    assert joined == "foo("
    retyped = postprocess(
        "    return y", prefix=prefix, suffix=suffix, multiline=False, stopped_by="end of line"
    )
    assert retyped is None


def test_block_that_runs_into_the_suffix_is_cut_at_the_end() -> None:
    text = postprocess(
        "z = y * 2\n    return y", prefix=BODY_PREFIX, suffix=BODY_SUFFIX, multiline=True
    )
    assert text == "z = y * 2"


def test_dedented_last_line_is_dropped_after_the_stream() -> None:
    text = postprocess("z = y * 2\nclass", prefix=BODY_PREFIX, suffix="", multiline=True)
    assert text == "z = y * 2"


def test_unmatched_closer_is_cut() -> None:
    assert balance_brackets("x) + 1", "y = ", "", multiline=False) == "x"
    # a closer for a bracket opened in the prefix is fine
    assert balance_brackets("x) + 1", "y = (", "", multiline=False) == "x) + 1"
    assert balance_brackets("a]", "f(", "", multiline=False) == "a"


def test_brackets_opened_by_the_completion_are_closed() -> None:
    assert balance_brackets("foo(a, [1, 2", "x = ", "", multiline=False) == "foo(a, [1, 2])"
    # ... unless the text after the cursor closes them already
    assert balance_brackets("foo(a", "x = ", ")\n", multiline=False) == "foo(a"


def test_brackets_inside_strings_and_comments_are_ignored() -> None:
    assert balance_brackets('print(")")', "", "", multiline=False) == 'print(")")'
    assert balance_brackets("x = 1  # (see above", "", "", multiline=False) == "x = 1  # (see above"
    ts = balance_brackets("x = 1;  // (see above", "", "", False, "typescript")
    assert ts == "x = 1;  // (see above"


def test_python_floor_division_is_not_a_comment() -> None:
    # `//` starts a comment in C-like languages only: the brackets after it count in Python.
    assert balance_brackets("max(1, n // 4))", "f(", "", multiline=False) == "max(1, n // 4))"
    assert balance_brackets("n // 2)", "y = ", "", multiline=False) == "n // 2"


def test_block_cut_back_to_last_balanced_line() -> None:
    text = "a = 1\n    b = compute(\n        x,"
    assert balance_brackets(text, BODY_PREFIX, "", multiline=True) == "a = 1"


def test_never_only_whitespace() -> None:
    assert postprocess("   \n  ", prefix=BODY_PREFIX, suffix="", multiline=True) is None
    assert postprocess("\nfoo()", prefix="x = 1", suffix="", multiline=False) is None
    assert postprocess("", prefix="x", suffix="", multiline=False) is None


def test_partial_stop_marker_at_the_end_is_removed() -> None:
    assert postprocess("value<|rt", prefix="x = ", suffix="", multiline=False, stop=("<|rt_",)) == (
        "value"
    )


def test_trailing_blank_lines_and_spaces_are_trimmed() -> None:
    text = postprocess("z = 1   \n    w = 2\n\n\n", prefix=BODY_PREFIX, suffix="", multiline=True)
    assert text == "z = 1\n    w = 2"


def test_a_block_stopped_by_a_cap_keeps_whole_lines_only() -> None:
    text = "total = 0\nfor item in items:\n    total += item.pri"
    kept = postprocess(text, prefix="", suffix="", multiline=True, stopped_by="token cap")
    assert kept == "total = 0\nfor item in items:"
    # the endpoint's stream may end without a reason: the same rule
    ended = postprocess(text, prefix="", suffix="", multiline=True, stopped_by="stream ended")
    assert ended == kept
    # stopped by a rule or the end of generation, the last line is the model's own
    finished = postprocess(
        text, prefix="", suffix="", multiline=True, stopped_by="end of generation"
    )
    assert finished is not None and finished.endswith("item.pri")
    # one line: nothing to cut back to
    assert postprocess("x = compu", prefix="", suffix="", multiline=True, stopped_by="time cap")


def test_a_first_line_like_the_suffix_s_is_the_suffix_only_if_the_next_line_is_too() -> None:
    prefix = "def load(data):\n    "
    suffix = "\n    try:\n        return data.decode()\n    except ValueError:\n        return ''\n"
    # `try:` may start the model's own block: the stream goes on to see the next line.
    waiting = truncate("try:\n", prefix=prefix, suffix=suffix, multiline=True)
    assert not waiting.done
    own = "try:\n        data = data.strip()\n    except AttributeError:\n        pass\n"
    shown = postprocess(own + suffix[1:], prefix=prefix, suffix=suffix, multiline=True)
    assert shown == own.rstrip()
    # The model wrote the suffix's first two lines: the suffix, nothing of its own.
    copied = truncate(
        "try:\n        return data.decode()\n", prefix=prefix, suffix=suffix, multiline=True
    )
    assert copied.done and copied.text == ""
    # It ended after the one line: nothing of its own either.
    assert postprocess("try:", prefix=prefix, suffix=suffix, multiline=True) is None


def test_a_line_that_ends_by_opening_a_bracket_is_left_open() -> None:
    # `field(` goes on over the next lines; closing it would make a different call.
    assert balance_brackets("field(", "x: int = ", "", multiline=False) == "field("
    assert balance_brackets("foo(a, [", "x = ", "", multiline=False) == "foo(a, ["
    assert balance_brackets("foo(a", "x = ", "", multiline=False) == "foo(a)"
    # A comment after the opener is not the line's end (`def __init__(  # lint directive`).
    line = "__init__(  # a comment"
    assert balance_brackets(line, "    def ", "", multiline=False) == line


def test_a_block_that_ends_by_opening_a_bracket_the_suffix_closes_is_left_open() -> None:
    # The model wrote `field(` and then the suffix's next line: the suffix goes on with the
    # call's arguments and closes it, so `field()` would be a different call.
    prefix = "@dataclass\nclass Options:\n    learning_rate: "
    suffix = '\n        default=1e-3,\n        metadata={"help": "(rate)"},\n    )\n'
    text = "float = field(\n        default=1e-3,\n"
    assert postprocess(text, prefix=prefix, suffix=suffix, multiline=True) == "float = field("
    # TypeScript: `if (x) {` over a body the suffix holds.
    ts_prefix = "function f() {\n  if ("
    ts_suffix = "\n    return 1;\n  }\n  return 0;\n}\n"
    ts = postprocess(
        "ready) {\n    return 1;",
        prefix=ts_prefix,
        suffix=ts_suffix,
        multiline=True,
        language="typescript",
    )
    assert ts == "ready) {"
    # A block that stopped on its own gets its bracket closed: the suffix's `}` may be the
    # function's.
    stopped = postprocess(
        "ready) {",
        prefix=ts_prefix,
        suffix="\n}\n",
        multiline=True,
        language="typescript",
        stopped_by="end of generation",
    )
    assert stopped == "ready) {}"
    # Where the suffix does not close it, it is closed as before.
    closed = balance_brackets("float = field(", prefix, "\n\nx = 1\n", True, runs_into_suffix=True)
    assert closed == "float = field()"


def test_a_docstring_open_where_the_bracket_scan_starts_is_read_as_a_string() -> None:
    """The prefix's last 60 lines may begin inside a docstring: scanned as code from there, the
    docstring's end would start a string and hide the bracket open on the cursor's line."""
    docstring = '        """Convert a tensor.\n' + "        It can.\n" * 70 + '        """\n'
    method = "    def to_list(self, tensor):\n" + docstring + "        return []\n\n"
    prefix = "class Tensors:\n" + method + "    def get_device(self, "
    answer = "tensor: Tensor) -> str:"
    assert balance_brackets(answer, prefix, "\n", multiline=False) == answer
    # A prefix cut from a longer file may begin inside one too: the scan starts at a definition.
    cut = '   the tail of a docstring cut from above.\n    """\n' + prefix
    assert balance_brackets(answer, cut, "\n", multiline=False) == answer
    closed = "class Tensors:\n" + method + "    y = "
    assert balance_brackets("x) + 1", closed, "", multiline=False) == "x"
    # A docstring may quote a definition: the pass starts at the last top-level one.
    example = (
        '    """Example:\n\n    class Args:\n        x: int\n' + "    More.\n" * 70 + '    """\n'
    )
    quoting = "def field(x):\n" + example + "    for item in items:\n        add("
    assert balance_brackets("item)", quoting, "\n", multiline=False) == "item)"
