"""Dataset: split by file without leakage, whole syntax spans, honest statistics, clear errors.

Runs the real server modules (file filter, hybrid index with the real embedder, prompt builder)
and llama.cpp's tokenizer for the default generator; no torch needed.
"""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
from conftest import copy_fixture_repo
from repotune.server.config import load_settings
from repotune.training.base import TrainError
from repotune.training.data.build import build_dataset
from repotune.training.data.examples import context_hit
from repotune.training.data.spans import (
    BLOCK_NODES,
    EXPRESSION_NODES,
    STATEMENT_NODES,
    syntax_spans,
)
from repotune.training.data.splits import SourceFile, split_for

REPO_FILES = ["retrieval.py", "postprocess.py", "prompts.py", "models.py", "embeddings.py"]


def small_repo(target: Path) -> Path:
    """A small real repository: some of RepoTune's own modules."""
    copy_fixture_repo(REPO_FILES, target)
    (target / "README.md").write_text("# demo\n")
    return target


def settings_for(tmp: Path, **train: object):
    values = {"max_seq_tokens": 384, "test_share": 0.2, "validation_share": 0.2, **train}
    return load_settings(None, {"train": values, "index": {"index_dir": str(tmp / "index")}})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    tmp = tmp_path_factory.mktemp("dataset")
    repo = small_repo(tmp / "repo")
    out = tmp / "out"
    stats = build_dataset(repo, out, settings_for(tmp), per_kind=2, progress=False)
    return repo, out, stats.to_json()


def rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_split_is_by_file_and_deterministic() -> None:
    paths = [f"pkg/m{i}.py" for i in range(200)]
    first = [split_for(p, 7, 0.1, 0.1) for p in paths]
    assert first == [split_for(p, 7, 0.1, 0.1) for p in paths]
    assert {"train", "validation", "test"} == set(first)
    assert 0.03 < first.count("test") / len(paths) < 0.2
    assert first != [split_for(p, 8, 0.1, 0.1) for p in paths]  # the seed matters


def test_no_leakage_between_splits(built: tuple[Path, Path, dict]) -> None:
    repo, out, _stats = built
    split = json.loads((out / "split.json").read_text())
    of = {path: name for name, paths in split.items() for path in paths}
    assert split["train"] and split["validation"]
    visible = {"train": {"train"}, "validation": {"train", "validation"}}
    for name in ("train", "validation"):
        examples = rows(out, name)
        assert examples, name
        for example in examples:
            assert of[example["path"]] == name  # targets come from this split's files only
            for snippet in example["context"]:
                assert of[snippet["path"]] in visible[name], (name, snippet)
            for test_path in split["test"]:
                assert f"<|rt_file|>{test_path}" not in example["prompt"]
            if example["kind"] == "qa":
                continue  # a question is shown its subject's definition (the oracle) by design
            # the target itself is never shown as context
            data_lines = _middle_lines(repo, example)
            for snippet in example["context"]:
                if snippet["path"] == example["path"]:
                    assert (
                        snippet["end_line"] < data_lines[0] or snippet["start_line"] > data_lines[1]
                    )


def _middle_lines(repo: Path, example: dict) -> tuple[int, int]:
    data = (repo / example["path"]).read_bytes()
    start = data.count(b"\n", 0, example["start_byte"]) + 1
    return start, start + example["middle"].count("\n")


def test_examples_follow_the_schema_and_the_serving_prompt(built: tuple[Path, Path, dict]) -> None:
    _repo, out, stats = built
    examples = [e for e in rows(out, "train") if e["kind"] != "qa"]  # questions: their own test
    kinds = {e["kind"] for e in examples}
    assert {"fim", "fim_random"} <= kinds
    assert "describe" in kinds  # the modules have docstrings
    marked = 0
    for example in examples[:20]:
        assert example["format"] == stats["prompt_format"] == "repotune"
        assert example["prompt"] == "".join(text for text, *_ in example["segments"])
        # the segment that ends at the cursor (token healing) is the file's own text, last;
        # none is marked when nothing before the cursor was kept
        cursors = [text for text, _, cursor in example["segments"] if cursor]
        assert cursors == ([example["segments"][-1][0]] if cursors else [])
        if cursors:
            assert cursors[0].startswith(example["path"] + "\n")
        marked += bool(cursors)
        assert example["completion"] == example["middle"] + "<|rt_end|>"
        assert example["prompt"].rstrip().endswith(example["prompt"].rstrip()[-10:])
        assert f"<|rt_prefix|>{example['path']}\n" in example["prompt"]
    assert marked >= 10
    modes = {e["context_mode"] for e in examples}
    assert "distractors_only" in modes and "retrieved" in modes
    assert any(s["role"] == "distractor" for e in examples for s in e["context"])


def test_spans_are_syntactically_whole(built: tuple[Path, Path, dict]) -> None:
    from tree_sitter_languages import get_parser

    repo, out, _ = built
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser = get_parser("python")
    for example in rows(out, "train") + rows(out, "validation"):
        if example["kind"] == "qa":
            continue  # a question's middle is its answer (tests/test_training_questions.py)
        data = (repo / example["path"]).read_bytes()
        middle = data[example["start_byte"] : example["end_byte"]].decode()
        assert middle == example["middle"]
        tree = parser.parse(data)
        wanted = {
            "block": BLOCK_NODES,
            "statement": STATEMENT_NODES,
            "expression": EXPRESSION_NODES,
        }.get(example["span"])
        if wanted is not None:
            stack, found = [tree.root_node], False
            while stack and not found:
                node = stack.pop()
                found = (
                    node.start_byte == example["start_byte"]
                    and node.end_byte == example["end_byte"]
                    and node.type in wanted
                )
                stack.extend(node.children)
            assert found, example["middle"]
            checked += 1
        if example["span"] in ("function_body", "docstring", "block", "statement"):
            # whole statements: re-indented as in the file, the middle parses on its own
            column = example["start_byte"] - (data.rfind(b"\n", 0, example["start_byte"]) + 1)
            code = textwrap.dedent(" " * column + middle)
            wrapped = "def _f():\n" + textwrap.indent(code, "    ") + "\n"
            assert not parser.parse(wrapped.encode()).root_node.has_error, middle
            checked += 1
    assert checked > 10


def test_context_hit_rate_is_what_the_examples_say(built: tuple[Path, Path, dict]) -> None:
    _repo, out, stats = built
    for name in ("train", "validation"):
        with_context = [e for e in rows(out, name) if e["context_mode"] == "retrieved"]
        expected = sum(e["context_hit"] for e in with_context) / len(with_context)
        assert stats["context_hit_rate"][name] == pytest.approx(expected)
        assert stats["examples"][name]["total"] == len(rows(out, name))
        # no teacher configured: the only questions are the ones derived from the code
        assert all("question_kind" in e for e in rows(out, name) if e["kind"] == "qa")
    assert stats["teacher"] is None
    # the definition itself: only identifiers that the visible text lacks count
    from repotune.server.completion.context import ContextSnippet

    snippet = ContextSnippet("a.py", "def parse_header(x):\n    return x\n")
    assert context_hit("parse_header(line)", "line = read()", [snippet])
    assert not context_hit("parse_header(line)", "parse_header = 1", [snippet])
    assert not context_hit("other_name(line)", "", [snippet])


def test_syntax_spans_on_javascript() -> None:
    text = "function add(a, b) {\n  const total = a + b;\n  return total;\n}\n"
    spans = syntax_spans(SourceFile("m.js", "javascript", text, text.encode()))
    names = {s.span for s in spans}
    assert {"function_body", "statement", "expression"} <= names


def test_empty_repository_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    with pytest.raises(TrainError, match="no files to learn from"):
        build_dataset(tmp_path / "repo", tmp_path / "out", settings_for(tmp_path), progress=False)


def test_the_home_folder_is_never_training_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    (home / "tool.py").write_text("def run():\n    return 1\n")
    monkeypatch.setenv("HOME", str(home))
    for root in (home, home / "project" / ".."):
        with pytest.raises(TrainError, match="your home folder"):
            build_dataset(root, tmp_path / "out", settings_for(tmp_path), progress=False)
    assert not (tmp_path / "out").exists()


def test_repository_without_supported_files_is_a_clear_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.md").write_text("# notes\n")
    (repo / "data.csv").write_text("a,b\n1,2\n")
    vendored = repo / "vendor" / "lib.py"
    vendored.parent.mkdir()
    vendored.write_text("def f():\n    return 1\n")
    with pytest.raises(TrainError, match="no source files in a supported language"):
        build_dataset(repo, tmp_path / "out", settings_for(tmp_path), progress=False)


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="nope not found"):
        build_dataset(tmp_path / "nope", tmp_path / "out", settings_for(tmp_path), progress=False)
    (tmp_path / "app.py").write_text("x = 1\n")  # it said "not found" for a file too
    with pytest.raises(TrainError, match=r"app\.py is not a directory"):
        build_dataset(tmp_path / "app.py", tmp_path / "out", settings_for(tmp_path), progress=False)


def test_a_default_adapter_corpus_part_from_older_secret_rules_is_built_again(
    tmp_path: Path,
) -> None:
    """The default adapter's corpus keeps each finished package's dataset (resumable); one built
    under older redaction rules is built again, a current one is kept."""
    from repotune.server.index.redact import REDACTION_VERSION
    from repotune.training.data.corpus import CorpusPackage, build_corpus_dataset

    repo = small_repo(tmp_path / "repo")
    package = CorpusPackage("demo==1.0", "MIT", 6, str(repo))
    settings = settings_for(tmp_path)
    out = tmp_path / "corpus"
    build_corpus_dataset([package], out, settings)
    part = out / "packages" / "demo__1.0"
    marker = part / "kept.txt"
    marker.write_text("a file of this build")
    build_corpus_dataset([package], out, settings)
    assert marker.exists()  # current rules: kept

    stats = json.loads((part / "stats.json").read_text())
    stats["redaction_version"] = 1
    (part / "stats.json").write_text(json.dumps(stats))
    build_corpus_dataset([package], out, settings)
    assert not marker.exists()  # older rules: built again
    rebuilt = json.loads((part / "stats.json").read_text())
    assert rebuilt["redaction_version"] == REDACTION_VERSION
