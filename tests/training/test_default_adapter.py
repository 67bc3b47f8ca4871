"""The default adapter: its corpus rules, its resolution by the server, and its recipe's steps."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from repotune.server.config import load_settings
from repotune.server.models import (
    ModelError,
    adapter_reference,
    default_adapter_path,
    resolve_adapter,
)
from repotune.training.base import TrainError
from repotune.training.data.corpus import (
    CORPUS,
    EXCLUDED,
    corpus_settings,
    fetch_corpus,
    humaneval_overlap,
    is_permissive,
    licence_of,
    merge_datasets,
    package_name,
    source_files,
)


def write_metadata(root: Path, text: str) -> None:
    info = root / "pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(text)


@pytest.mark.parametrize(
    ("metadata", "licence", "permissive"),
    [
        ("Name: a\nLicense-Expression: MIT\n", "MIT", True),
        ("Name: a\nClassifier: License :: OSI Approved :: BSD License\n", "BSD License", True),
        ("Name: a\nLicense: Apache Software License 2.0\n", "Apache Software License 2.0", True),
        ("Name: a\nLicense-Expression: GPL-3.0-or-later\n", "GPL-3.0-or-later", False),
        ("Name: a\nLicense-Expression: MPL-2.0\n", "MPL-2.0", False),
        ("Name: a\n", "", False),
    ],
)
def test_licences_are_read_from_the_wheel_and_only_permissive_ones_pass(
    tmp_path: Path, metadata: str, licence: str, permissive: bool
) -> None:
    write_metadata(tmp_path, metadata)
    assert licence_of(tmp_path) == licence
    assert is_permissive(licence) is permissive


def test_the_corpus_is_pinned_and_holds_no_package_the_evaluation_uses() -> None:
    names = [package_name(spec) for spec in CORPUS]  # raises on an unpinned npm package
    assert all("==" in spec or spec.startswith("npm:") for spec in CORPUS)
    assert any(spec.startswith("npm:") for spec in CORPUS)  # TypeScript beside Python
    assert not set(names) & EXCLUDED
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("package_json", "licence"),
    [
        ({"name": "a", "license": "MIT"}, "MIT"),
        ({"name": "a", "license": {"type": "Apache-2.0", "url": "x"}}, "Apache-2.0"),
        ({"name": "a"}, ""),
        ({"name": "a", "license": ["MIT"]}, ""),
    ],
)
def test_an_npm_package_licence_is_read_from_package_json(
    tmp_path: Path, package_json: dict, licence: str
) -> None:
    (tmp_path / "package.json").write_text(json.dumps(package_json))
    assert licence_of(tmp_path) == licence


def test_npm_specs_name_their_package_and_must_be_pinned() -> None:
    assert package_name("npm:rxjs@7.8.1") == "rxjs"
    assert package_name("npm:@tanstack/query-core@5.59.0") == "@tanstack/query-core"
    assert package_name("Jinja2==3.1.6") == "jinja2"
    for unpinned in ("npm:rxjs", "npm:@scope/name", "npm:rxjs@latest"):
        with pytest.raises(SystemExit, match="pin the npm version"):
            package_name(unpinned)


def test_an_npm_package_contributes_its_typescript_sources_only(tmp_path: Path) -> None:
    import io
    import tarfile

    from repotune.server.corpora import unpack_npm
    from repotune.server.index.files import WorkspaceFilter

    every = ("src/a.ts", "src/ui/b.tsx", "src/types.d.ts", "dist/a.js", "dist/esm/a.ts", "a.mjs")
    path = tmp_path / "x.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for rel in (*every, "package.json"):
            data = b'{"license": "MIT"}' if rel == "package.json" else b"export const a = 1;\n"
            info = tarfile.TarInfo(f"package/{rel}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    unpack_npm(path, tmp_path / "x")
    root = tmp_path / "x" / "package"
    assert set(source_files(root, "npm:x@1.0.0")) == {"src/a.ts", "src/ui/b.tsx"}
    # what the index, the dataset and the evaluation see: the same (its .repotuneignore)
    scanned = {entry.rel for entry in WorkspaceFilter(root, load_settings()).scan().files}
    assert scanned & set(every) == {"src/a.ts", "src/ui/b.tsx"}


def test_an_npm_tarball_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    import io
    import tarfile

    from repotune.server.corpora import unpack_npm

    def tarball(name: str, entries: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as archive:
            for entry, data in entries.items():
                info = tarfile.TarInfo(entry)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return path

    good = tarball("good.tgz", {"package/package.json": b"{}", "package/src/a.ts": b"x"})
    unpack_npm(good, tmp_path / "good")
    assert (tmp_path / "good" / "package" / "src" / "a.ts").read_bytes() == b"x"
    evil = tarball("evil.tgz", {"package/package.json": b"{}", "../../escaped.ts": b"x"})
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack_npm(evil, tmp_path / "evil" / "inner")
    assert not (tmp_path / "escaped.ts").exists()


def test_an_excluded_package_is_refused_before_anything_is_fetched() -> None:
    with pytest.raises(TrainError, match="evaluation"):
        fetch_corpus(("requests==2.32.3",))


def test_humaneval_overlap_finds_a_task_copied_into_the_corpus(tmp_path: Path) -> None:
    task = {
        "task_id": "SingleLineInfilling/HumanEval/0/L1",
        "entry_point": "has_close_elements",
        "canonical_solution": "    for idx, elem in enumerate(numbers):\n"
        "        for idx2, elem2 in enumerate(numbers):\n            return True\n",
    }
    data = tmp_path / "he.jsonl.gz"
    with gzip.open(data, "wt") as handle:
        handle.write(json.dumps(task) + "\n")
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "a.py").write_text("def has_close_elements(numbers):\n    return False\n")
    assert humaneval_overlap([clean], data) == []
    copied = tmp_path / "copied"
    copied.mkdir()
    (copied / "b.py").write_text(
        "def has_close_elements(numbers, threshold):\n" + task["canonical_solution"]
    )
    assert humaneval_overlap([copied], data) == [task["task_id"]]


def test_package_datasets_merge_into_one_train_and_validation_set(tmp_path: Path) -> None:
    parts = []
    for name in ("a", "b"):
        part = tmp_path / name
        part.mkdir()
        for split in ("train", "validation", "test"):
            rows = [{"id": f"{name}{i}", "prompt": "p", "completion": "c"} for i in range(3)]
            (part / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        parts.append(part)
    counts = merge_datasets(parts, tmp_path / "merged")
    assert counts == {"train": 6, "validation": 6}
    ids = [json.loads(line)["id"] for line in (tmp_path / "merged/train.jsonl").open()]
    assert sorted(ids) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert (tmp_path / "merged/test.jsonl").read_text() == ""  # test files stay per package


def test_corpus_settings_override_only_the_dataset_shape() -> None:
    settings = corpus_settings(load_settings(None, {"train": {"learning_rate": 1e-4}}))
    assert settings.index.dense is False
    assert settings.completion.context_tokens == 256
    assert settings.train.learning_rate == 1e-4


def test_the_default_adapter_applies_to_the_default_generator_only() -> None:
    assert adapter_reference("default", "default") == "default"
    assert adapter_reference("default", "/models/qwen.gguf") is None
    assert adapter_reference("none", "default") is None
    assert adapter_reference(None, "default") is None
    assert adapter_reference("/a.gguf", "/models/qwen.gguf") == "/a.gguf"
    assert load_settings(None, {}).model.adapter == "default"  # on by default


def test_a_missing_default_adapter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from repotune.server import models

    monkeypatch.setattr(models, "default_adapter_path", lambda: Path("/nonexistent/a.gguf"))
    with pytest.raises(ModelError, match="default adapter is missing"):
        resolve_adapter("default")


def test_the_shipped_default_adapter_is_a_small_lora_gguf() -> None:
    import gguf

    path = default_adapter_path()
    assert path.is_file(), "the default adapter ships with the package"
    assert path.stat().st_size < 25_000_000
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["adapter.type"].contents() == "lora"
    assert (path.parent / "MODEL_CARD.md").is_file()
    resolved = resolve_adapter("default")
    assert resolved.source == "package:repotune" and len(resolved.sha256) == 64
