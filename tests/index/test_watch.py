"""The watch plan (pure logic over a real directory tree and the real workspace filter)."""

from __future__ import annotations

from pathlib import Path

from repotune.server.config import Settings
from repotune.server.index.files import WorkspaceFilter
from repotune.server.index.watch import plan_watches


def make(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")


def test_clean_subtrees_get_one_recursive_watch(tmp_path: Path) -> None:
    make(tmp_path, ".gitignore", "src/a/b/c.py", "src/d.py", "docs/index.md", ".git/HEAD")
    (tmp_path / ".gitignore").write_text("build/\n")
    make(tmp_path, "build/out/x.py", "src/a/build/gen.py")
    plan = plan_watches(tmp_path, WorkspaceFilter(tmp_path, Settings()))
    assert plan == {"": False, "docs": True, "src": False, "src/a": False, "src/a/b": True}


def test_no_ignored_directory_means_one_watch(tmp_path: Path) -> None:
    make(tmp_path, "pkg/mod.py", "README.md")
    assert plan_watches(tmp_path, WorkspaceFilter(tmp_path, Settings())) == {"": True}


def test_symlinked_directories_are_not_watched(tmp_path: Path) -> None:
    make(tmp_path, "pkg/mod.py", "other/x.py")
    (tmp_path / "pkg" / "link").symlink_to(tmp_path / "other")
    plan = plan_watches(tmp_path, WorkspaceFilter(tmp_path, Settings()))
    assert plan == {"": False, "pkg": False, "other": True}


def test_too_many_watches_fall_back_to_top_level(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n")
    for n in range(10):
        make(tmp_path, f"packages/p{n}/index.py", f"packages/p{n}/node_modules/dep/x.py")
    filter = WorkspaceFilter(tmp_path, Settings())
    assert len(plan_watches(tmp_path, filter)) == 2 + 10
    assert plan_watches(tmp_path, filter, max_watches=5) == {"": False, "packages": True}


def test_index_include_keeps_ignored_directories_watched(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("vendor/\n")
    make(tmp_path, "vendor/lib/x.py", "app.py")
    settings = Settings.model_validate({"index": {"include": ["vendor/lib/**"]}})
    plan = plan_watches(tmp_path, WorkspaceFilter(tmp_path, settings))
    assert plan == {"": True}
