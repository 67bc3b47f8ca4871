"""The workspace folders of one server: each folder's index and settings, and why a folder has
none (its index cannot be opened, its own settings file is invalid).

A folder's settings are the editor's settings under the folder's `.repotune/settings.toml`; a
change to either is applied to the folder's running index, or the index is replaced when where it
lives, how it chunks or embeds changed. The folder stays listed throughout ("reopening").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repotune.server.config import Settings, SettingsError, load_settings
from repotune.server.repository_settings import anchor_model_paths

if TYPE_CHECKING:
    from repotune.server.index.workspace import WorkspaceIndex
    from repotune.server.llm.embeddings import SharedEmbedders

EventSink = Callable[[dict[str, Any]], None]
# Index settings a running index applies itself (a full pass); any other index change needs a
# new index.
FILTER_KEYS = frozenset({"exclude", "include", "secret_patterns", "max_file_bytes"})


def too_broad_to_index(root: Path) -> str | None:
    """Why a folder is not indexed at all, or None: the file system's root or the user's home
    folder (or one holding it) is not a project, and holds shell histories, tokens and keys that
    no secret pattern lists (an editor can open it, or pick it as the root of a lone file).
    Links and `..` are resolved first: a link to the home folder is the home folder."""
    root = root.resolve()
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, KeyError):  # no HOME and no password-database entry (some containers)
        home = None
    if root == Path(root.anchor):
        what = "the file system's root"
    elif home is not None and (root == home or home.is_relative_to(root)):
        what = "your home folder" if root == home else "a folder holding your home folder"
    else:
        return None
    return (
        f"not indexed: it is {what}, which holds far more than a project (shell histories, "
        "tokens, keys); open the project's own folder (completions work without an index)"
    )


class WorkspaceFolders:
    """Folder -> index and settings, thread-safe; reports through `on_event`, `record_error`
    and `emit_status` (the assistant's)."""

    def __init__(
        self,
        embedders: SharedEmbedders,
        editor_overrides: Mapping[str, Any],
        on_event: EventSink,
        record_error: Callable[[str], None],
        emit_status: Callable[[], None],
    ) -> None:
        self._embedders = embedders  # one embedder for all folders
        self.editor_overrides: dict[str, Any] = dict(editor_overrides)
        self._on_event = on_event
        self._record_error = record_error
        self._emit_status = emit_status
        self._lock = threading.RLock()
        self._reload_lock = threading.Lock()
        self._indexes: dict[Path, WorkspaceIndex] = {}
        self._settings: dict[Path, Settings] = {}
        self._index_errors: dict[Path, str] = {}  # folders whose index could not be opened
        self._settings_errors: dict[Path, str] = {}  # folders whose own settings are invalid
        self._reopening: set[Path] = set()  # folders whose index is being replaced in place

    # ------------------------------------------------------------------ lookup

    def roots(self) -> list[Path]:
        return list(self._indexes)

    def items(self) -> Iterator[tuple[Path, WorkspaceIndex]]:
        """(root, index) of every folder with an index, as of now."""
        return iter(list(self._indexes.items()))

    def index_for(self, root: Path) -> WorkspaceIndex:
        return self._indexes[root]

    def settings_of(self, root: Path) -> Settings:
        return self._settings[root]

    def folder_for(self, path: Path) -> Path | None:
        """The innermost folder holding `path` (None for a buffer with no file, or outside)."""
        if not path.is_absolute():
            return None  # a buffer with no file (untitled:, a notebook cell): no index
        resolved = path.resolve()
        best: Path | None = None
        for root in self._indexes:
            inside = resolved == root or root in resolved.parents
            if inside and (best is None or len(root.parts) > len(best.parts)):
                best = root
        return best

    def primary_settings(self, default: Settings) -> Settings:
        """The model is shared by all folders; the first folder's settings choose it."""
        for root in self._indexes:
            return self._settings[root]
        return default

    def unused_model_settings(self, root: Path, in_use: Settings) -> str | None:
        """What a folder sets for the model that differs from the model in use (one model serves
        every folder, chosen by the first folder's settings), or None."""
        if root not in self._settings:
            return None
        own = self._settings[root].model.model_dump(exclude={"repository_models"})
        used = in_use.model.model_dump(exclude={"repository_models"})
        differing = [f"{key} = {own[key]!r}" for key in own if own[key] != used[key]]
        if not differing:
            return None
        return (
            f"{root}: its model settings ({', '.join(differing)}) are not used: one model "
            "serves every folder, set by the first folder's settings"
        )

    # ------------------------------------------------------------------ settings

    def load_settings(
        self, root: Path, overrides: Mapping[str, Any], source: str = "editor settings"
    ) -> Settings:
        """A folder's settings; when its own file is invalid (or refused, like an index_dir
        outside its .repotune/), the error is kept for the status and the editor's apply.
        A relative model path in the editor's settings is relative to the folder, as in its
        own file, not to the folder the editor happened to start the server in."""
        overrides = anchor_model_paths(overrides, root)
        try:
            settings = load_settings(root, overrides, source)
        except SettingsError as exc:
            message = f"{exc} (the folder uses the editor's settings)"
            if self._settings_errors.get(root) != message:  # reported once, shown until fixed
                self._record_error(message)
            self._settings_errors[root] = message
            return load_settings(None, overrides, source)
        self._settings_errors.pop(root, None)
        return settings

    def replace_overrides(
        self, overrides: Mapping[str, Any], source: str
    ) -> dict[Path, tuple[Settings | None, Settings]]:
        """New editor settings: every folder's settings are re-read (raises SettingsError before
        anything changes); returns root -> (old, new), to apply with `apply_index_settings`."""
        with self._lock:
            new = {root: self.load_settings(root, overrides, source) for root in self._indexes}
            old = dict(self._settings)
            self.editor_overrides = dict(overrides)
            self._settings = dict(new)
        return {root: (old.get(root), settings) for root, settings in new.items()}

    def reload_settings(self, root: Path) -> None:
        """Re-read a folder's own settings file (it changed, or a reindex was asked for) and
        apply what changed; an invalid file is reported and the editor's settings are used."""
        root = root.resolve()
        # One at a time: a save sends several events, and an early reader may see a half-written
        # file; serialized, the last one to run reads the file as it ends up.
        with self._reload_lock:
            settings = self.load_settings(root, self.editor_overrides)
            with self._lock:
                if root not in self._indexes:
                    return
                old = self._settings.get(root)
                self._settings[root] = settings
            self.apply_index_settings(root, old, settings)
        self._emit_status()

    def apply_index_settings(self, root: Path, old: Settings | None, new: Settings) -> None:
        """Filter rules go to the running index (a full pass); where the index lives, how it
        chunks or embeds need a new index, so the folder's index is replaced."""
        index = self._indexes.get(root)
        if index is None or old is None or old == new:
            if index is not None:
                index.settings = new
            return
        old_rest = old.index.model_dump(exclude=set(FILTER_KEYS))
        new_rest = new.index.model_dump(exclude=set(FILTER_KEYS))
        if old_rest != new_rest or old.model.embedder != new.model.embedder:
            self._replace_index(root, index, new)
            return
        if old.index != new.index:
            index.apply_filter_settings(new)
        else:
            index.settings = new

    # ------------------------------------------------------------------ adding and removing

    def add(self, root: Path, watch: bool = True) -> Settings | None:
        """Open and start a folder's index; returns its settings when it is now the first
        folder (they choose the model), else None."""
        root = root.resolve()
        with self._lock:
            if root in self._indexes:
                return None
            settings = self.load_settings(root, self.editor_overrides)
            problem = too_broad_to_index(root)
            index: WorkspaceIndex | None = None
            if problem is None:
                try:
                    index = self._open_index(root, settings)
                except Exception as exc:  # no index for this folder; completions still work
                    problem = f"the index cannot be used: {exc}"
            if index is None:
                self._index_errors[root] = f"{root}: {problem}"
                self._record_error(self._index_errors[root])
                self._emit_status()
                return None
            self._index_errors.pop(root, None)
            self._settings[root] = settings
            self._indexes[root] = index
            first = len(self._indexes) == 1
        index.start(watch=watch)
        return settings if first else None

    def remove(self, root: Path) -> None:
        root = root.resolve()
        with self._lock:
            self._index_errors.pop(root, None)
            self._settings_errors.pop(root, None)
            index = self._indexes.pop(root, None)
            self._settings.pop(root, None)
            self._reopening.discard(root)
        if index is not None:
            index.close()

    def retry_failed(self) -> None:
        """Try again to open the folders whose index could not be opened (the cause may be
        fixed by now)."""
        for root in list(self._index_errors):
            self.add(root)

    def close(self) -> None:
        with self._lock:
            indexes = list(self._indexes.values())
            self._indexes.clear()
        for index in indexes:
            index.close()

    def _open_index(self, root: Path, settings: Settings) -> WorkspaceIndex:
        from repotune.server.index.workspace import WorkspaceIndex  # after initialize: heavy

        return WorkspaceIndex(
            root,
            settings,
            self._index_event(root),
            shared_embedders=self._embedders,
            on_settings_file=lambda: self.reload_settings(root),
        )

    def _replace_index(self, root: Path, current: WorkspaceIndex, settings: Settings) -> None:
        """Swap a folder's index for one built with new settings; the folder stays listed
        throughout (as "reopening" while no index serves it), so clients never see it vanish."""
        from repotune.server.index.store import index_location  # heavy: numpy, SQLite, Chroma

        moved = index_location(root, settings) != current.location
        if not moved:  # the same files: the old index must let go of them first
            with self._lock:
                if not self._registered(root, current):
                    return  # removed or replaced meanwhile
                del self._indexes[root]
                self._reopening.add(root)
            current.close()
        try:
            replacement = self._open_index(root, settings)
            error = ""
        except Exception as exc:  # no index for this folder; completions still work
            replacement, error = None, f"{root}: the index cannot be used: {exc}"
        with self._lock:
            wanted = self._registered(root, current) if moved else root in self._reopening
            self._reopening.discard(root)
            if wanted and moved:
                del self._indexes[root]
            if wanted and replacement is not None:
                self._indexes[root] = replacement
                self._settings[root] = settings
            elif wanted:
                self._index_errors[root] = error
        if replacement is None and wanted:
            self._record_error(error)
        if replacement is not None and wanted:
            replacement.start(watch=True)
        elif replacement is not None:
            replacement.close()
        if moved and wanted:
            current.close()
        self._emit_status()

    def _registered(self, root: Path, index: WorkspaceIndex) -> bool:
        return self._indexes.get(root) is index

    def _index_event(self, root: Path) -> EventSink:
        def forward(event: Any) -> None:
            payload = dict(event) if isinstance(event, Mapping) else dict(vars(event))
            payload["root"] = str(root)
            self._on_event({"type": "index", **payload})
            if payload.get("phase") in ("idle", "done"):
                self._emit_status()

        return forward

    # ------------------------------------------------------------------ status

    def status(self, in_use: Settings) -> tuple[list[dict[str, Any]], dict[str, int], bool]:
        """Each folder's status row, the index totals, and whether any folder is indexing;
        `in_use`: the settings the model was loaded with."""
        totals = {"files": 0, "chunks": 0, "dense_pending": 0}
        rows: list[dict[str, Any]] = []
        indexing = False
        for root, index in self.items():
            stats = index.stats()
            rows.append({"root": str(root), **stats})
            if (unused := self.unused_model_settings(root, in_use)) is not None:
                rows[-1]["model_settings_unused"] = unused
            if root in self._settings_errors:
                rows[-1]["settings_error"] = self._settings_errors[root]
            for key in totals:
                totals[key] += int(stats.get(key, 0) or 0)
            indexing = indexing or not index.is_idle()
        for root, error in list(self._index_errors.items()):
            rows.append({"root": str(root), "phase": "error", "error": error})
        for root in list(self._reopening):
            rows.append({"root": str(root), "phase": "reopening"})
            indexing = True
        return rows, totals, indexing

    def standing_errors(self) -> list[str]:
        """Errors that hold until fixed (a folder without index, a refused setting)."""
        return [*self._index_errors.values(), *self._settings_errors.values()]
