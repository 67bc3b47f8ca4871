"""The repository's n-grams: the table, the mixing rule, and the real model using them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_COMPLETION, wait_for
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.repo_ngrams import (
    MIN_ORDER,
    PieceTokens,
    RepositoryNgrams,
    RepositoryTables,
    RepositoryTexts,
    snapshot,
    texts_from,
)
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import load_settings

WORDS: dict[str, int] = {}


def words(text: str) -> list[int]:
    """A stand-in tokenizer for the pure tests: one id per whitespace-separated word."""
    return [WORDS.setdefault(word, len(WORDS)) for word in text.split()]


def logits_preferring(token: int, margin: float = 1.0) -> np.ndarray:
    logits = np.zeros(max(64, len(WORDS) + 1), dtype=np.float32)
    logits[token] = margin
    return logits


def table(files: dict[str, str]) -> RepositoryNgrams:
    ngrams = RepositoryNgrams()
    assert ngrams.refresh(texts_from(files), words)
    return ngrams


def test_the_longest_match_elsewhere_overrules_an_unsure_model() -> None:
    ngrams = table({"a.py": "x = config . set_level ( 7 , strict )"})
    prior = ngrams.prior(words, "y = config . set_level (", "", "b.py", 0.5)
    nine = WORDS.setdefault("9", len(WORDS))
    assert prior.choose(logits_preferring(nine), []) == WORDS["7"]
    # ... and goes on from the answer's own tokens.
    assert prior.choose(logits_preferring(nine), [WORDS["7"]]) == WORDS[","]


def test_a_sure_model_keeps_its_token() -> None:
    ngrams = table({"a.py": "x = config . set_level ( 7 , strict )"})
    prior = ngrams.prior(words, "y = config . set_level (", "", "b.py", 0.5)
    nine = WORDS.setdefault("9", len(WORDS))
    assert prior.choose(logits_preferring(nine, margin=20.0), []) == nine
    assert prior.changed == 0


def test_short_matches_and_weight_zero_change_nothing() -> None:
    ngrams = table({"a.py": "set_level ( 7 )"})
    nine = WORDS.setdefault("9", len(WORDS))
    # Only two tokens match (`set_level (` after an unknown word): under MIN_ORDER.
    assert MIN_ORDER > 2
    short = ngrams.prior(words, "other_name . set_level (", "", "b.py", 0.5)
    assert short.choose(logits_preferring(nine), []) == nine
    longer = table({"a.py": "q . set_level ( 7 )"})
    off = longer.prior(words, "q . set_level (", "", "b.py", 0.0)
    assert off.choose(logits_preferring(nine), []) == nine


def test_the_open_file_replaces_its_indexed_copy() -> None:
    """The indexed copy of the open file is left out (its buffer stands for it), so a stale
    saved line does not vote; the buffer's own text does."""
    ngrams = table({"b.py": "z = make ( old_value )", "c.py": "unrelated text here"})
    nine = WORDS.setdefault("9", len(WORDS))
    stale = ngrams.prior(words, "w = make (", "", "b.py", 0.5)
    assert stale.choose(logits_preferring(nine), []) == nine
    fresh = ngrams.prior(words, "v = make ( new_value )\nw = make (", "", "b.py", 0.5)
    assert fresh.choose(logits_preferring(nine), []) == WORDS["new_value"]
    # Another file's copy still counts.
    assert (
        ngrams.prior(words, "w = make (", "", "d.py", 0.5).choose(logits_preferring(nine), [])
        == WORDS["old_value"]
    )


def test_refresh_tokenizes_only_what_changed() -> None:
    calls: list[str] = []

    def counting(text: str) -> list[int]:
        calls.append(text)
        return words(text)

    files = {"a.py": "a b c d", "b.py": "e f g h"}
    ngrams = RepositoryNgrams()
    ngrams.refresh(texts_from(files), counting)
    assert sorted(calls) == ["a b c d", "e f g h"]
    calls.clear()
    ngrams.refresh(texts_from({"a.py": "a b c d", "b.py": "e f g X"}), counting)
    assert calls == ["e f g X"]
    before = ngrams.token_count
    ngrams.refresh(texts_from({"a.py": "a b c d"}), counting)
    assert ngrams.token_count < before


def test_a_keystroke_tokenizes_only_the_line_it_changed() -> None:
    calls: list[str] = []

    def counting(text: str) -> list[int]:
        calls.append(text)
        return words(text)

    pieces = PieceTokens(size=3)
    window = "a = 1\n\nb = 2\nc = 3\n"
    assert pieces.tokenize(counting, window) == words(window)
    assert calls == ["a = 1\n\n", "b = 2\n", "c = 3\n"]
    calls.clear()
    assert pieces.tokenize(counting, window + "d =") == words(window + "d =")
    assert calls == ["d ="]
    # The oldest piece made room for the newest.
    calls.clear()
    pieces.tokenize(counting, "a = 1\n\n")
    assert calls == ["a = 1\n\n"]


def test_a_huge_repository_s_table_stops_at_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from repotune.server.completion import repo_ngrams

    monkeypatch.setattr(repo_ngrams, "MAX_TOKENS", 10)
    files = {f"m{i}.py": "a b c d e f" for i in range(10)}
    assert table(files).token_count <= 10 + 7  # the file that crossed it is kept whole


def test_tables_start_over_for_a_new_model() -> None:
    tables = RepositoryTables(refresh_s=3600)
    source = texts_from({"a.py": "a b c d"})
    first = tables.sync(source, "model-1", words)
    assert first.token_count > 0
    assert tables.sync(source, "model-1", words) is first
    assert tables.sync(source, "model-2", words) is not first


def test_store_segments_rebuild_the_indexed_file(tmp_path: Path) -> None:
    """The table's texts come from the index's chunks, redacted as indexed."""
    from repotune.server.index.workspace import WorkspaceIndex

    root = tmp_path / "repo"
    root.mkdir()
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(40))
    (root / "mod.py").write_text(body + 'API_TOKEN = "sk-live-0123456789abcdefghijklmnop"\n')
    settings = load_settings(None, {"index": {"dense": False, "index_dir": str(tmp_path / "ix")}})
    with WorkspaceIndex(root, settings) as index:
        index.start(watch=False)
        assert index.wait_lexical(60)
        texts = snapshot(index.store)
    segments = texts.file_segments("mod.py")
    rebuilt = "\n".join(segments)
    assert "def f0(x):" in rebuilt and "return x + 39" in rebuilt
    assert "sk-live-0123456789" not in rebuilt
    assert texts.file_hashes().keys() == {"mod.py"}


# --------------------------------------------------------------------------- the real model

LIBRARY = """\
from lab import rig


def calibrate(device):
    result = rig.frobnicate_axis(device, 2, mode="fast")
    return result


def warm(device):
    result = rig.frobnicate_axis(device, 2, mode="fast")
    device.wait()
    return result
"""


def test_the_buffer_s_pieces_tokenize_as_the_whole_text(generator_model) -> None:
    """The piece cache is exact for the default generator's tokenizer: RepoTune's own Python
    and TypeScript files tokenized piece by piece give the ids of the whole file."""
    from llama_cpp import Llama

    llm = Llama(str(generator_model.path), vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        return list(llm.tokenize(text.encode(), add_bos=False, special=False)) if text else []

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "server" / "completion").glob("*.py"))
    files += sorted((root / "extension" / "src").glob("*.ts"))
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert PieceTokens().tokenize(tokenize, text) == tokenize(text), path


@pytest.fixture(scope="module")
def engine(generator_model) -> Iterator[CompletionEngine]:
    settings = {"completion": {**SMALL_COMPLETION}, "model": {"context_length": 1024}}
    instance = CompletionEngine(load_settings(None, settings))
    assert instance.wait_ready(300), instance.load_error
    yield instance
    instance.close()


@pytest.mark.slow
def test_the_real_model_writes_the_repository_s_arguments(engine: CompletionEngine) -> None:
    """A call written twice in another file of the repository, not in the prompt: with the
    repository's n-grams the model writes its arguments as the repository does (alone it
    guesses zeros)."""
    source = texts_from({"lab/motors.py": LIBRARY})
    assert engine.sync_repository(source) > 0
    prefix = (
        "from lab import rig\n\n\ndef start(device):\n    result = rig.frobnicate_axis(device, "
    )

    def complete(repository: RepositoryTexts | None) -> str:
        engine.cache.clear()
        request = CompletionRequest("lab/run.py", "python", prefix, "\n", (), "lab", repository)
        result = engine.complete(request)
        return result.text if result is not None else ""

    assert complete(source).startswith('2, mode="fast")')
    assert not complete(None).startswith('2, mode="fast")')


@pytest.mark.slow
def test_the_context_ends_where_the_healed_prompt_does(engine: CompletionEngine) -> None:
    """Token healing leaves ` Run` out of the prompt, so the answer's first token re-spells it:
    the n-grams' context must end at `class` too. Then another file's `class Runway:` says
    what follows; the buffer's own ` Run`, tokenized alone at the cursor, votes for nothing."""
    from types import SimpleNamespace

    from repotune.server.completion.generation import loaded_tokenizer, ngram_prior
    from repotune.server.llm.healing import Healing

    loaded = engine._loaded
    assert loaded is not None
    tokenize = loaded_tokenizer(loaded)
    other = "import os\n\n\nclass Runway:\n    pass\n"
    source = texts_from({"lab/other.py": other})
    engine.sync_repository(source)
    prefix = "import os\n\n\nclass Run"
    healed = tokenize(prefix)[-1]
    request = CompletionRequest("lab/run.py", "python", prefix, "\n", (), "lab", source)
    ngrams = engine._repositories.for_request(loaded, request, 0.5)
    prepared = SimpleNamespace(healing=Healing(loaded.llm.detokenize([healed])))
    choose = ngram_prior(loaded, ngrams, engine.settings.completion, request, prepared)  # type: ignore[arg-type]
    assert choose is not None
    counts = choose.__self__.next_counts([])  # type: ignore[attr-defined]
    ids = tokenize(other)
    after_class = ids[ids.index(tokenize("import os\n\n\nclass")[-1]) + 1]
    assert set(counts) == {after_class}
    assert healed not in counts or healed == after_class


@pytest.mark.slow
def test_the_server_core_builds_the_table_from_the_folder_s_index(
    tmp_path: Path, generator_model: object
) -> None:
    """The assistant hands the folder's index to the engine, which builds the table in the
    background; the next completion writes the repository's arguments. Retrieval is off
    (top_k 0), so no snippet shows them: only the n-grams can."""
    from repotune.server.assistant import Assistant

    repo = tmp_path / "repo"
    (repo / "lab").mkdir(parents=True)
    (repo / "lab" / "motors.py").write_text(LIBRARY)
    assistant = Assistant(
        {
            "model": {"generator": str(generator_model.path), "context_length": 1024},  # type: ignore[attr-defined]
            "index": {"index_dir": str(tmp_path / "index"), "dense": False},
            "retrieval": {"top_k": 0},
            # a high weight: the test is about the table being built from the index and used,
            # not a near-tie at the default weight that a rebuilt llama.cpp's numerics can flip
            # (after `,` the model's lone space outscored the repository's ` mode` at 0.5)
            "completion": {**SMALL_COMPLETION, "repository_ngrams": 0.9},
        }
    )
    try:
        assistant.add_folder(repo, watch=False)
        assert assistant.folders.index_for(repo.resolve()).wait_idle(30)
        assistant.start()
        engine = assistant.engine
        assert engine is not None
        assert wait_for(lambda: engine.ready or bool(engine.load_error), 240), engine.load_error
        buffer = "from lab import rig\n\n\ndef start(device):\n"
        buffer += "    result = rig.frobnicate_axis(device, "
        target = repo / "lab" / "run.py"
        assistant.complete(target, buffer, len(buffer), "python")  # starts the table
        assert wait_for(lambda: engine.status()["repository_ngrams"]["tokens"] > 0, 60)
        engine.cache.clear()
        outcome = assistant.complete(target, buffer, len(buffer), "python")
        assert outcome is not None and outcome.text.startswith('2, mode="fast")')
    finally:
        assistant.close()
