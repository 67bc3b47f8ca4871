"""Retrieval: RRF fusion and query building (pure logic), then hybrid search over a real index
with the real embedder: a function is found by its name and by a description of what it does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from repotune.server.config import Settings
from repotune.server.index.enclosing import enclosing_function, function_name, parallel_function
from repotune.server.index.retrieval import cursor_query, rrf_fuse
from repotune.server.index.workspace import WorkspaceIndex

FILES = {
    "text/distance.py": '''
def levenshtein(a: str, b: str) -> int:
    """Number of single-character insertions, deletions or substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
''',
    "net/download.py": '''
import urllib.request


def fetch_with_retries(url: str, attempts: int = 3) -> bytes:
    """Download a URL over HTTP, retrying on network errors."""
    for attempt in range(attempts):
        try:
            return urllib.request.urlopen(url, timeout=10).read()
        except OSError:
            if attempt == attempts - 1:
                raise
    return b""
''',
    "storage/cache.py": '''
import collections


class LruCache:
    """Keeps the most recently used entries, evicting the oldest beyond a capacity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items = collections.OrderedDict()

    def get(self, key):
        value = self.items.pop(key)
        self.items[key] = value
        return value
''',
    "math/stats.py": '''
def mean_and_variance(values: list[float]) -> tuple[float, float]:
    """Average and spread of a list of numbers."""
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / len(values)
''',
    "docs/guide.md": "# Guide\n\nInstall the package, then run the command line tool.\n",
}


def test_rrf_fusion_rewards_agreement() -> None:
    fused = rrf_fuse({"lexical": ["a", "b", "c"], "dense": ["b", "d"]}, k=60)
    assert [cid for cid, _, _ in fused][:2] == ["b", "a"]
    scores = {cid: score for cid, score, _ in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert dict((cid, src) for cid, _, src in fused)["b"] == ("lexical", "dense")
    assert rrf_fuse({}, 60) == []


def test_cursor_query_takes_the_window_around_the_cursor() -> None:
    prefix = "\n".join(f"line {i}" for i in range(100))
    suffix = "\n".join(f"after {i}" for i in range(100))
    query = cursor_query(prefix, suffix, 20)
    assert query.splitlines()[0] == "line 80" and "line 79" not in query
    assert query.splitlines()[-1] == "after 4"
    assert cursor_query("", "", 20) == ""


def started_index(
    base: Path, files: dict[str, str], embedder: Any, settings: Settings | None = None
) -> WorkspaceIndex:
    """A complete index of `files` written under base/repo (the index in base/index)."""
    for rel, text in files.items():
        path = base / "repo" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    workspace = WorkspaceIndex(
        base / "repo", settings or Settings(), embedder=embedder, location=base / "index"
    )
    workspace.start(watch=False)
    assert workspace.wait_idle(120)
    return workspace


def cursor_hits_with(
    workspace: WorkspaceIndex, settings: dict[str, Any], path: str, prefix: str, suffix: str
) -> list[Any]:
    """The same cursor searched in `workspace`'s index under other settings."""
    other = WorkspaceIndex(
        workspace.root,
        Settings.model_validate(settings),
        embedder=workspace.embedding.model,
        location=workspace.location,
    )
    try:
        return other.search_cursor(path, prefix, suffix, 3)
    finally:
        other.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[WorkspaceIndex]:
    files = {rel: text.lstrip("\n") for rel, text in FILES.items()}
    workspace = started_index(tmp_path_factory.mktemp("retrieval"), files, embedder)
    yield workspace
    workspace.close()


def test_finds_a_function_by_its_name(index: WorkspaceIndex) -> None:
    hits = index.search("fetch_with_retries", 3)
    assert hits[0].path == "net/download.py"
    assert hits[0].symbol == "fetch_with_retries" and hits[0].kind == "function"
    assert set(hits[0].sources) == {"lexical", "dense"}
    assert hits[0].start_line <= 4 <= hits[0].end_line


@pytest.mark.parametrize(
    ("description", "path"),
    [
        ("edit distance between two strings", "text/distance.py"),
        ("evict least recently used items when full", "storage/cache.py"),
        ("compute the average of numbers", "math/stats.py"),
    ],
)
def test_finds_a_function_by_a_description(
    index: WorkspaceIndex, description: str, path: str
) -> None:
    hits = index.search(description, 3)
    assert hits[0].path == path, [(h.path, h.sources) for h in hits]
    assert "dense" in hits[0].sources


def test_excluded_region_and_dedup(index: WorkspaceIndex) -> None:
    hits = index.search("levenshtein edit distance", 5)
    own = next(h for h in hits if h.path == "text/distance.py")
    excluded = index.search(
        "levenshtein edit distance", 5, exclude=("text/distance.py", own.start_line, own.start_line)
    )
    assert all(h.path != "text/distance.py" for h in excluded)
    assert len({(h.path, h.start_line) for h in hits}) == len(hits)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert index.search("anything", 0) == [] and index.search("   ", 5) == []


def test_dense_query_keeps_whole_lines_nearest_the_cursor_within_its_token_budget() -> None:
    from repotune.server.config import RetrievalSettings
    from repotune.server.index.retrieval import cursor_queries, dense_cursor_query

    settings = RetrievalSettings(dense_query_lines=6, dense_query_tokens=10, query_lines=20)
    prefix = "one two three\nfour five six\nseven eight nine\nten eleven\ntwelve = "

    def words(text: str) -> int:
        return len(text.split())

    query = dense_cursor_query(prefix, " tail\nbelow", settings, words)
    assert query == "seven eight nine\nten eleven\ntwelve = \n tail"
    assert "four" not in query and "below" not in query
    # a single line over the budget is still kept whole: the query is never empty
    assert dense_cursor_query("x " * 50, "", settings, words).split() == ["x"] * 50
    # without the embedder's tokenizer: the line window alone
    both = cursor_queries(prefix, " tail\nbelow", settings)
    assert both.dense.startswith("one two three") and "below" not in both.dense
    assert both.lexical.startswith("one two three")


def test_cursor_names_come_nearest_first_then_imports_then_the_rest() -> None:
    from repotune.server.index.retrieval import cursor_names

    prefix = (
        "from billing.rates import apply_surcharge, RateTable\n"
        "import helpers\n"
        "def far_away():\n    return old_value\n"
        + "\n".join(f"filler_{i} = {i}" for i in range(20))
        + "\ndef total(order):\n    amount = order.subtotal\n    return compute_tax("
    )
    names = cursor_names(prefix, "amount, region)\nnext_line_name", window_lines=3)
    assert names[:5] == ["compute_tax", "return", "subtotal", "order", "amount"]
    assert names.index("region") < names.index("apply_surcharge")  # rest of the cursor's line
    assert names.index("RateTable") < names.index("old_value")  # imports before the rest
    assert "next_line_name" not in names and "to" not in names  # short names are skipped
    assert len(cursor_names("\n".join(f"name_{i}" for i in range(500)), "", 20, limit=7)) == 7


def test_boilerplate_head_is_trimmed_and_pure_boilerplate_dropped() -> None:
    from repotune.server.index.retrieval import boilerplate_lines, trim_boilerplate

    header = "# Copyright 2024 Example\n# Licensed under the Apache License\n# See LICENSE\n\n"
    rows = [
        {"path": f"m{i}.py", "text": header + f"import os\n\ndef f{i}():\n    return {i}"}
        for i in range(3)
    ]
    common = boilerplate_lines(rows)
    assert "# Licensed under the Apache License" in common and "import os" in common
    text, start = trim_boilerplate(rows[0]["text"], 10, common) or ("", 0)
    assert text.startswith("def f0():") and start == 16
    assert trim_boilerplate(header + "x = 1", 1, common) is None  # nothing left but one line
    # a run shorter than BOILERPLATE_RUN (here two shared lines) is kept as it is
    short = "import os\n# See LICENSE\ndef g():\n    pass"
    assert trim_boilerplate(short, 5, common) == (short, 5)
    # lines shared by fewer than BOILERPLATE_FILES files are no boilerplate
    assert boilerplate_lines(rows[:2]) == set()
    # a method signature that several classes share (an interface) is kept: it is the code
    method = "    def generate(\n        self,\n        model_input,\n    ):\n        return 1\n"
    shared = boilerplate_lines([{"path": f"m{i}.py", "text": method} for i in range(3)])
    assert "def generate(" in shared
    assert trim_boilerplate(method, 20, shared) == (method, 20)


LICENSE = "".join(
    f"# Licensed line {i} of the Example Corp license, all rights reserved.\n" for i in range(8)
)
DEFINITION_FILES = {
    "billing/rates.py": LICENSE
    + '''
def apply_surcharge(amount, region):
    """Regional extras added on top of a price."""
    extra = SURCHARGES.get(region, 0)
    return amount + extra
''',
    "billing/invoice.py": LICENSE
    + """
from billing.rates import apply_surcharge


def invoice_total(order, region):
    amount = sum(line.price for line in order.lines)
    return apply_surcharge(""",
    **{
        f"misc/module_{i}.py": LICENSE + f"\n\ndef helper_{i}(value):\n    return value * {i}\n"
        for i in range(4)
    },
    **{
        f"plugins/p{i}/hooks.py": "\n\ndef setup_hooks(app):\n    app.register()\n"
        for i in range(4)
    },
}


@pytest.fixture(scope="module")
def definitions_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> Iterator[WorkspaceIndex]:
    workspace = started_index(tmp_path_factory.mktemp("definitions"), DEFINITION_FILES, embedder)
    yield workspace
    workspace.close()


def test_cursor_search_brings_the_definition_of_a_name_used_there(
    definitions_index: WorkspaceIndex,
) -> None:
    source = DEFINITION_FILES["billing/invoice.py"]
    hits = definitions_index.search_cursor("billing/invoice.py", source, "amount, region)\n", 3)
    assert hits[0].path == "billing/rates.py", [(h.path, h.sources) for h in hits]
    assert "definition" in hits[0].sources
    assert hits[0].text.startswith("def apply_surcharge")  # the license header cut off
    assert all("Licensed line" not in h.text for h in hits)
    # with the lookup off, the same cursor is served by the text rankings only
    off = {"retrieval": {"definition_weight": 0}}
    off_hits = cursor_hits_with(
        definitions_index, off, "billing/invoice.py", source, "amount, region)\n"
    )
    assert all("definition" not in h.sources for h in off_hits)


def test_ambiguous_and_same_file_names_are_not_looked_up(
    definitions_index: WorkspaceIndex,
) -> None:
    ranking = definitions_index.retriever.definition_ranking
    assert ranking(["setup_hooks"], 10, None) == []  # defined in four files: ambiguous
    assert len(ranking(["helper_1", "helper_2"], 10, None)) == 2
    assert ranking(["invoice_total"], 10, "billing/invoice.py") == []  # the cursor's own file
    assert ranking(["no_such_name"], 10, None) == []


def test_the_function_the_cursor_is_in_is_read_from_indentation() -> None:
    method = "class PrintLogger:\n    def __repr__(self) -> str:\n        "
    assert enclosing_function(method) == "__repr__"
    signature = (
        "def load(\n    path: str,\n    strict: bool = False,\n) -> dict:\n    data = {}\n    "
    )
    assert enclosing_function(signature) == "load"  # past a signature's closing line
    nested = "def run(self):\n    if self.ready:\n        for job in self.jobs:\n            "
    assert enclosing_function(nested) == "run"
    blank = "def run(self):\n    x = 1\n\n"  # an empty line, not yet indented
    assert enclosing_function(blank) == "run"
    assert enclosing_function("def opened(self):\n") == "opened"
    assert enclosing_function("class Config:\n    debug = False\n    ") is None  # class body
    assert enclosing_function("def done():\n    return 1\n\nVALUE = 2\n") is None
    typescript = (
        "class Cart {\n  total(items: Item[]): number {\n    if (x) {\n      y();\n    }\n    "
    )
    assert enclosing_function(typescript) == "total"  # `if (x) {` is no method
    assert enclosing_function("export async function load(path) {\n  ") == "load"
    assert enclosing_function("func (s *Server) Handle(w Writer) {\n\t") == "Handle"
    assert enclosing_function("fn parse(input: &str) -> Result<()> {\n    ") == "parse"
    # a line too long to be a signature is not read as one (a crafted line of brackets took the
    # method pattern seconds to reject)
    assert function_name("def load(" + "a, " * 120 + "b):") is None
    assert enclosing_function("name(" + "x) : y (" * 4000 + "\n    ") is None
    # a protocol method's namesakes are no parallel code: not looked up
    assert parallel_function(method) is None
    assert parallel_function("class A {\n  constructor(x) {\n    ") is None
    assert parallel_function("def generate_stream(self, prompt):\n    ") == "generate_stream"


def _logger(kind: str, body: str) -> str:
    return f'''class {kind}Logger:
    """Writes each message to a {kind.lower()} target."""

    def __init__(self, target):
        self._target = target
        self._written = 0

    def msg(self, message: str) -> None:
{body}

    def describe(self) -> str:
        return f"<{kind}Logger(target={{self._target!r}})>"
'''


LOGGERS = {
    "log/output.py": _logger("Print", "        print(message, file=self._target)")
    + "\n\n"
    + _logger("Write", "        self._target.write(message)"),
    # the file being written: what its methods call is defined elsewhere, and ranks high
    "log/bytes_output.py": "from log.encoding import encode_line, flush_target\n\n\n"
    + _logger(
        "Bytes",
        "        data = encode_line(message, self._target.encoding)\n"
        "        self._target.write(data)\n        flush_target(self._target, data)",
    ),
    "log/encoding.py": """
def encode_line(message, encoding):
    return (message + "\\n").encode(encoding)


def flush_target(target, data):
    if len(data) > 4096:
        target.flush()
""",
    **{
        f"plugins/p{i}.py": f"class Plugin{i}:\n    def __init__(self, app):\n"
        "        self.app = app\n"
        for i in range(8)
    },
}


@pytest.fixture(scope="module")
def loggers_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> Iterator[WorkspaceIndex]:
    settings = Settings.model_validate({"index": {"chunk_lines": 6}})  # a chunk per method
    workspace = started_index(tmp_path_factory.mktemp("loggers"), LOGGERS, embedder, settings)
    yield workspace
    workspace.close()


def test_a_method_being_written_brings_its_namesakes_in_sibling_classes_first(
    loggers_index: WorkspaceIndex,
) -> None:
    source = LOGGERS["log/bytes_output.py"]
    line = source.index('        return f"<BytesLogger(')
    prefix, suffix = source[: line + 8], source[source.index("\n", line) :]  # the line to write
    hits = loggers_index.search_cursor("log/bytes_output.py", prefix, suffix, 3)
    assert "same name" in hits[0].sources, [(h.path, h.start_line, h.sources) for h in hits]
    assert 'return f"<WriteLogger(' in hits[0].text or 'return f"<PrintLogger(' in hits[0].text
    ranking = loggers_index.store.definitions.same_name_sites
    mine = ranking("__init__", "log/output.py", 6)
    paths = [loggers_index.store.get_chunks(mine)[c]["path"] for c in mine]
    assert paths == ["log/output.py"] * 2  # eleven definitions: this file's only
    assert len(ranking("__init__", "plugins/p0.py", 6)) == 1
    described = ranking("describe", "log/bytes_output.py", 6)  # three: all, this file's first
    assert [loggers_index.store.get_chunks(described)[c]["path"] for c in described] == [
        "log/bytes_output.py",
        "log/output.py",
        "log/output.py",
    ]
    off = {"index": {"chunk_lines": 6}, "retrieval": {"same_name_weight": 0}}
    off_hits = cursor_hits_with(loggers_index, off, "log/bytes_output.py", prefix, suffix)
    assert all("same name" not in h.sources for h in off_hits)
    assert off_hits[0].path == "log/encoding.py"  # what the rankings gave before


def test_import_lines_follow_bracketed_and_continued_imports() -> None:
    from repotune.server.index.retrieval import import_lines

    lines = [
        "import os",
        "from ..utils import (",
        "    apply_surcharge,",
        "    RateTable,",
        ")",
        "x = compute()",
        "from a import b, \\",
        "    c",
        "import {",
        "  parseArgs,",
        '} from "./cli";',
        "const y = 2;",
    ]
    assert list(import_lines(lines)) == [
        line for line in lines if line not in ("x = compute()", "const y = 2;")
    ]


PLUGIN_FILES = {
    f"plugins/plugin_{i}.py": f"class Plugin{i}:\n"
    f"    def setup(self, app):\n        app.register({i})\n        return app\n"
    for i in range(5)
}


def test_question_names_are_symbols_and_code_names() -> None:
    from repotune.server.index.retrieval import question_names

    symbols, names = question_names("What does `Plugin2.setup` do with app_state in setup.py?")
    assert symbols == ("Plugin2.setup",)  # setup.py is a file, not Owner.member
    assert names == ("setup", "app_state")


def test_a_question_about_owner_member_retrieves_that_owners_definition(
    tmp_path: Path, embedder: Any
) -> None:
    root = tmp_path / "repo"
    for rel, text in PLUGIN_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    workspace = WorkspaceIndex(root, Settings(), embedder=embedder, location=tmp_path / "index")
    workspace.start(watch=False)
    try:
        assert workspace.wait_idle(120)
        # `setup` is defined in five files (ambiguous by name); the symbol picks one
        hits = workspace.search_question("What does `Plugin3.setup` do?", 3)
        assert hits[0].path == "plugins/plugin_3.py", [(h.path, h.sources) for h in hits]
        assert "definition" in hits[0].sources and hits[0].symbol == "Plugin3"  # kept whole
    finally:
        workspace.close()


def question_hits(root: Path, index: Path, embedder: Any, question: str) -> list[Any]:
    """What `search_question` returns for `question` on a fresh, complete index of `root`."""
    workspace = WorkspaceIndex(root, Settings(), embedder=embedder, location=index)
    workspace.start(watch=False)
    try:
        assert workspace.wait_idle(120)
        return workspace.search_question(question, 3)
    finally:
        workspace.close()


def test_candidate_names_join_a_questions_plain_words_as_code_does() -> None:
    from repotune.server.index.question_words import candidate_names

    names = candidate_names("How is the cache directory configured?")
    assert {"cache_directory", "cacheDir", "CacheDir", "CACHE_DIR"} <= set(names)
    assert "cache" not in names  # a word alone is not taken for a name
    assert "directory_cache" not in names  # in the order written
    # stop words and punctuation end a run; code in backticks is the question's own name
    names = candidate_names("What does `load_settings` do with the max file bytes, e.g. setup.py?")
    assert "max_file_bytes" in names and "load_settings" not in names
    assert not {"does_max", "bytes_setup", "py", "g", "the"} & set(names)


def test_a_plain_english_question_retrieves_the_definition_it_means(
    tmp_path: Path, embedder: Any
) -> None:
    """ "How is the cache directory configured?" means `cache_dir`, which it never writes; the
    words alone ranked other code about caches and folders above it."""
    from conftest import copy_fixture_repo

    root = copy_fixture_repo(["config.py", "store.py", "models.py", "files.py"], tmp_path / "r")
    hits = question_hits(
        root, tmp_path / "index", embedder, "How is the cache directory configured?"
    )
    top = hits[0]
    assert "def cache_dir()" in top.text, [(h.path, h.symbol, h.sources) for h in hits]
    assert "definition" in top.sources


def _method(name: str, body_lines: int) -> str:
    lines = [f"    def {name}(self, x):", f'        """{name} of the owner."""']
    lines += [f"        x = x + {i}" for i in range(body_lines)]
    return "\n".join([*lines, "        return x", ""])


def test_owner_member_is_found_in_a_chunk_named_for_another_method(
    tmp_path: Path, embedder: Any
) -> None:
    """Small methods share a chunk named for the first of them (`Owner.first`): a question
    about `Owner.third_step` found no chunk by symbol, and `third_step` alone is defined in too
    many places to be looked up by name."""
    root = tmp_path / "repo"
    (root / "others").mkdir(parents=True)
    methods = [_method("first", 30), _method("second_step", 3), _method("third_step", 3)]
    owner = 'class Owner:\n    """Keeps things."""\n\n' + "\n".join([*methods, _method("last", 30)])
    (root / "owner.py").write_text(owner)
    for i in range(4):
        (root / "others" / f"o{i}.py").write_text(f"class O{i}:\n{_method('third_step', 1)}")
    hits = question_hits(root, tmp_path / "index", embedder, "What does `Owner.third_step` do?")
    top = hits[0]
    assert top.path == "owner.py" and top.symbol == "Owner.first", [
        (h.path, h.symbol, h.sources) for h in hits
    ]
    assert "def third_step" in top.text and "definition" in top.sources


def test_owner_field_is_found_in_the_owners_window_that_assigns_it(
    tmp_path: Path, embedder: Any
) -> None:
    """A dataclass field is no definition to the chunker: `RunConfig.retry_limit` was found by
    no symbol or name lookup, and the windows of a long config class all carry its name."""
    root = tmp_path / "repo"
    root.mkdir()
    doc = "\n".join(f"        option_{i}: what option {i} does." for i in range(70))
    fields = "\n".join(f"    option_{i}: int = {i}" for i in range(70))
    (root / "config.py").write_text(
        f'from dataclasses import dataclass\n\n\n@dataclass\nclass RunConfig:\n    """Options.\n\n'
        f'    Args:\n{doc}\n        retry_limit:\n            How often to retry.\n    """\n\n'
        f"{fields}\n    retry_limit: int = 3\n    timeout_s: float = 1.0\n"
    )
    question = "What does `RunConfig.retry_limit` control?"
    hits = question_hits(root, tmp_path / "index", embedder, question)
    top = hits[0]
    assert "    retry_limit: int = 3" in top.text, [(h.start_line, h.sources) for h in hits]
    assert "definition" in top.sources


def test_quoted_phrases_are_sentences_not_names() -> None:
    from repotune.server.index.retrieval import quoted_phrases

    question = 'Which code says "Invalid content type: expected a string" and not "x_y"?'
    assert quoted_phrases(question) == ("Invalid content type: expected a string",)
    assert quoted_phrases("Where is “Type adapter for the model.” defined?") == (
        "Type adapter for the model.",
    )


def test_a_quoted_sentence_retrieves_the_chunk_that_holds_it_word_for_word(
    tmp_path: Path, embedder: Any
) -> None:
    """A pasted error message or docstring: its words are common ones, and other functions say
    the same words in another order (more often); the quote is found as a phrase."""
    root = tmp_path / "repo"
    root.mkdir()
    for i in range(8):
        message = (
            "The content must be a string or a list containing a string"
            if i == 5
            else "A list containing a string, or a string: the content must be that, a content"
            " string or a list of content"
        )
        (root / f"adapter_{i}.py").write_text(
            f"def format_content_{i}(content):\n"
            f'    """Format the content type of a string or list for the model."""\n'
            f"    if not isinstance(content, (str, list)):\n"
            f'        raise ValueError("{message}")\n'
            "    return content\n"
        )
    question = 'Where does "The content must be a string or a list containing a string" come from?'
    hits = question_hits(root, tmp_path / "index", embedder, question)
    assert hits[0].path == "adapter_5.py", [(h.path, h.sources) for h in hits]
    assert "phrase" in hits[0].sources
