"""Code-derived questions: every kind, answers that cite the defining line, abstentions that say
so, no question outside its file's split, the token and context budget, and the server's prompt.

Builds a real dataset (real file filter, hybrid index with the real embedder, llama.cpp's
tokenizer for the default generator) from the small shop in tests/data/qa_repo.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from repotune.server.ask.answer import continue_document
from repotune.server.ask.definitions import definitions, first_sentence
from repotune.server.completion.context import ContextSnippet
from repotune.server.config import load_settings
from repotune.training.data.build import build_dataset
from repotune.training.data.questions import (
    ABSTAIN,
    ABSTAIN_TASK,
    KINDS,
    fake_name,
    repository_names,
)
from repotune.training.data.splits import SourceFile

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "qa_repo"
CITATION = re.compile(r"([\w./-]+\.py):(\d+)")
MAX_SEQ = 2048
CONTEXT_CHARS = 2000


def settings_for(tmp: Path) -> Any:
    # seed 41 puts accounts.py and inventory.py in test, reports.py in validation
    train = {
        "seed": 41,
        "test_share": 0.2,
        "validation_share": 0.15,
        "max_seq_tokens": MAX_SEQ,
        "question_share": 0.5,
        "question_abstain_share": 0.3,
    }
    return load_settings(
        None,
        {
            "train": train,
            "ask": {"context_chars": CONTEXT_CHARS},
            "index": {"index_dir": str(tmp / "index")},
        },
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    tmp = tmp_path_factory.mktemp("questions")
    repo = tmp / "repo"
    shutil.copytree(FIXTURE, repo)
    settings = settings_for(tmp)
    build_dataset(repo, tmp / "out", settings, per_kind=2, progress=False)
    return repo, tmp / "out", settings


def rows(out: Path, split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def questions(out: Path) -> list[dict[str, Any]]:
    return [r for s in ("train", "validation", "test") for r in rows(out, s) if r["kind"] == "qa"]


def test_every_kind_is_asked_and_questions_are_a_share(built: tuple[Path, Path, Any]) -> None:
    _repo, out, _settings = built
    asked = questions(out)
    assert {r["question_kind"] for r in asked} == set(KINDS)
    assert any(not r["answerable"] and r["subject"]["path"] is None for r in asked)  # made up
    assert any(r["context_mode"] == "oracle_removed" for r in asked)
    assert sum(r["answerable"] for r in asked) > len(asked) / 2
    everything = [r for s in ("train", "validation", "test") for r in rows(out, s)]
    assert 0.15 < len(asked) / len(everything) < 0.6  # question_share 0.5 of each file


def test_answers_cite_the_defining_line(built: tuple[Path, Path, Any]) -> None:
    repo, out, _settings = built
    answered = [r for r in questions(out) if r["answerable"]]
    assert answered
    for row in answered:
        subject = row["subject"]
        path, line = CITATION.search(row["middle"]).groups()  # type: ignore[union-attr]
        assert (path, int(line)) == (subject["path"], subject["start_line"]), row["middle"]
        text = (repo / path).read_text().splitlines()[int(line) - 1]
        short = subject["name"].rsplit(".", 1)[-1]
        assert re.search(rf"(def|class)\s+{short}\b|^\s*{short}\s*[:=]", text), (text, row)
        assert f"`{subject['name']}`" in row["middle"]
        if row["question_kind"] in {"what", "which"} and "```" in row["middle"]:
            quoted = row["middle"].split("```", 2)[1].split("\n", 1)[1]
            assert quoted.splitlines()[0].strip() == text.strip()  # the quote starts there
        # the oracle (the definition) is the first snippet the question is shown
        assert row["context"][0]["role"] == "oracle"
        oracle = row["context"][0]
        assert oracle["start_line"] <= subject["start_line"] <= oracle["end_line"]


def test_abstentions_say_so_and_invent_nothing(built: tuple[Path, Path, Any]) -> None:
    repo, out, _settings = built
    texts = "\n".join(p.read_text() for p in repo.rglob("*.py"))
    abstained = [r for r in questions(out) if not r["answerable"]]
    assert abstained
    for row in abstained:
        name = row["subject"]["name"]
        if row["subject"]["path"] is None:  # a name the repository does not define
            assert row["middle"] == ABSTAIN.format(name=name)
            assert name.rsplit(".", 1)[-1] not in texts
            continue
        assert row["middle"] in {ABSTAIN.format(name=name), ABSTAIN_TASK}
        assert all(s["role"] != "oracle" for s in row["context"])
        short = name.rsplit(".", 1)[-1]
        assert not re.search(rf"(def|class)\s+{short}\b", row["prompt"])  # not shown anywhere
        assert not re.search(rf"^\s*{short}\s*[:=]", row["prompt"], re.M)


def test_questions_stay_in_their_split(built: tuple[Path, Path, Any]) -> None:
    _repo, out, _settings = built
    split = json.loads((out / "split.json").read_text())
    of = {path: name for name, paths in split.items() for path in paths}
    assert split["test"] == ["shop/accounts.py", "shop/inventory.py"]
    visible = {"train": {"train"}, "validation": {"train", "validation"}}
    for name in ("train", "validation", "test"):
        asked = [r for r in rows(out, name) if r["kind"] == "qa"]
        assert asked, name
        for row in asked:
            assert of[row["path"]] == name
            if row["subject"]["path"] is not None:
                assert of[row["subject"]["path"]] == name
            for snippet in row["context"]:
                assert of[snippet["path"]] in visible.get(name, set(of.values())), snippet
            if name != "test":
                for test_path in split["test"]:
                    assert f"### {test_path}:" not in row["prompt"]


def test_token_and_context_budget(built: tuple[Path, Path, Any]) -> None:
    _repo, out, _settings = built
    for row in questions(out):
        assert row["prompt_tokens"] + row["completion_tokens"] <= MAX_SEQ
        bodies = re.findall(r"### [^\n]+\n```[a-z]*\n(.*?)\n```", row["prompt"], re.S)
        assert sum(len(b) for b in bodies) <= CONTEXT_CHARS
        assert row["completion"].endswith("\nQuestion:")
        assert "\n\n\n" not in row["middle"] and "\n### " not in row["middle"]
        assert len(row["middle"].splitlines()) <= 9  # a few lines


class RecordingModel:
    """Stands in for llama.cpp to see the exact prompt the engine's ask builds."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def create_completion(self, prompt: str, **_: Any) -> list[dict[str, Any]]:
        self.prompts.append(prompt)
        return [{"choices": [{"text": " ok"}]}]


def test_prompt_is_what_the_server_builds(built: tuple[Path, Path, Any]) -> None:
    repo, out, settings = built
    model = RecordingModel()
    checked = 0
    for row in questions(out):
        assert row["format"] == "ask_document"  # the default Gemma 3 270M has no chat template
        snippets = []
        for entry in row["context"]:
            lines = (repo / entry["path"]).read_text().splitlines()
            text = "\n".join(lines[entry["start_line"] - 1 : entry["end_line"]])
            snippets.append(ContextSnippet(entry["path"], text, entry["start_line"]))
        deadline = time.monotonic() + 60
        continue_document(
            model, settings, row["question"], snippets, 8, threading.Event(), deadline
        )
        assert model.prompts[-1] == row["prompt"]
        checked += 1
    assert checked


def test_made_up_names_are_not_in_the_repository() -> None:
    import random

    files = []
    for path in sorted(FIXTURE.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(FIXTURE).as_posix()
        files.append(SourceFile(rel, "python", text, text.encode()))
    taken = repository_names(files)
    rng = random.Random(3)
    made = 0
    for source in files:
        for definition in definitions(source, with_settings=True):
            fake = fake_name(definition, taken, rng)
            assert fake is not None and fake.rsplit(".", 1)[-1] not in taken
            made += 1
    assert made > 20


def test_definitions_read_names_signatures_and_summaries() -> None:
    text = (FIXTURE / "shop" / "cart.py").read_text()
    source = SourceFile("shop/cart.py", "python", text, text.encode())
    found = {d.name: d for d in definitions(source, with_settings=True)}
    add = found["Cart.add_item"]
    assert add.kind == "method" and add.start_line == 14
    assert add.signature == (
        "def add_item(self, sku: str, unit_price: float, quantity: int = 1) -> None"
    )
    assert add.params == (("sku", True), ("unit_price", True), ("quantity", False))
    assert add.summary == "Put an item into the cart or raise its quantity."
    assert found["Cart"].kind == "class"
    text = (FIXTURE / "shop" / "shipping.py").read_text()
    source = SourceFile("shop/shipping.py", "python", text, text.encode())
    found = {d.name: d for d in definitions(source, with_settings=True)}
    assert found["FREE_SHIPPING_FROM"].summary == "order value from which shipping costs nothing."
    assert found["FREE_SHIPPING_FROM"].value == "50.0"
    assert "DAYS_PER_ZONE" not in found  # no comment: nothing to say about it
    assert found["delivery_days"].summary is None  # no docstring: none is made up
    assert first_sentence('"""Add tax. Then round."""') == "Add tax."
    assert first_sentence("# ### not a summary") is None
