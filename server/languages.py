"""The language facts every stage uses: a file's language from its name, its line-comment
marker, its Markdown fence name; which languages tree-sitter chunks by definition is in
index/chunking.py (`_DEFS`), next to the grammar node names it needs."""

from __future__ import annotations

from pathlib import PurePosixPath

# Extension -> tree-sitter grammar name: files chunked by definition and used for training.
CODE_LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".cs": "c_sharp",
    ".rb": "ruby",
}
TEXT_LANGUAGES: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".ini": "ini",
    ".cfg": "ini",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".sql": "sql",
    ".html": "html",
    ".css": "css",
    ".scss": "scss",
    ".xml": "xml",
    ".proto": "protobuf",
    ".kt": "kotlin",
    ".swift": "swift",
    ".php": "php",
    ".lua": "lua",
    ".scala": "scala",
}
NAMED_FILES = {"Makefile": "make", "Dockerfile": "dockerfile", "CMakeLists.txt": "cmake"}

# Language ids (RepoTune's and the editors') whose line comments start with "#": brackets after
# one are not code to the completion's bracket balancing.
HASH_COMMENT_LANGUAGES = {"python", "ruby", "shell", "bash", "sh", "yaml", "toml", "r", "perl"}

# Line-comment markers by extension (path headers of context files in the prompt).
_HASH_COMMENT = {
    "py", "pyi", "sh", "bash", "zsh", "rb", "pl", "r", "yaml", "yml", "toml", "cfg", "ini",
    "conf", "mk", "cmake", "jl", "ex", "exs", "nim", "tf", "dockerfile", "ps1", "coffee",
}  # fmt: skip
_DASH_COMMENT = {"sql", "lua", "hs", "elm", "ada", "vhdl"}
_SEMI_COMMENT = {"lisp", "clj", "cljs", "el", "scm", "asm"}
_PERCENT_COMMENT = {"tex", "m", "erl"}


def comment_prefix(path: str) -> str:
    """The line-comment marker for a file, from its extension (for path headers)."""
    name = path.rsplit("/", 1)[-1].lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else name
    if ext in _HASH_COMMENT or name in ("makefile", "dockerfile"):
        return "#"
    if ext in _DASH_COMMENT:
        return "--"
    if ext in _SEMI_COMMENT:
        return ";"
    if ext in _PERCENT_COMMENT:
        return "%"
    return "//"


def language_for(path: str) -> str:
    name = PurePosixPath(path).name
    if name in NAMED_FILES:
        return NAMED_FILES[name]
    suffix = PurePosixPath(path).suffix.lower()
    return CODE_LANGUAGES.get(suffix) or TEXT_LANGUAGES.get(suffix) or "text"


def fence_language(path: str) -> str:
    """The Markdown fence name of a file's language (``python`` for ``.py``)."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"py": "python", "js": "javascript", "ts": "typescript", "rs": "rust"}.get(ext, ext)
