"""Chunks: tree-sitter definitions for code, overlapping line windows for everything else.

The only module that imports tree-sitter. A chunk is a line range of one file; definitions
(functions, methods, classes...) become chunks with their symbol, signature and enclosing class.
Definitions longer than the size window are split (a class into its header and its members, a long
function into overlapping windows); tiny neighbours are merged so a chunk is worth retrieving.
Chunk ids depend only on the path and the chunk's own content, so an edit re-embeds only the
chunks it touched and a fresh index always yields the same ids.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from repotune.server.languages import language_for

# node type -> kind, per grammar
_DEFS: dict[str, dict[str, str]] = {
    "python": {"function_definition": "function", "class_definition": "class"},
    "javascript": {
        "function_declaration": "function",
        "generator_function_declaration": "function",
        "class_declaration": "class",
        "method_definition": "method",
    },
    "typescript": {
        "function_declaration": "function",
        "generator_function_declaration": "function",
        "class_declaration": "class",
        "abstract_class_declaration": "class",
        "method_definition": "method",
        "interface_declaration": "interface",
        "type_alias_declaration": "type",
        "enum_declaration": "enum",
        "internal_module": "module",
        "module": "module",  # `declare module "name" { ... }`
    },
    "go": {
        "function_declaration": "function",
        "method_declaration": "method",
        "type_declaration": "type",
    },
    "rust": {
        "function_item": "function",
        "impl_item": "impl",
        "trait_item": "trait",
        "struct_item": "struct",
        "enum_item": "enum",
        "mod_item": "module",
        "macro_definition": "macro",
    },
    "java": {
        "class_declaration": "class",
        "interface_declaration": "interface",
        "enum_declaration": "enum",
        "record_declaration": "class",
        "method_declaration": "method",
        "constructor_declaration": "constructor",
    },
    "c": {
        "function_definition": "function",
        "struct_specifier": "struct",
        "enum_specifier": "enum",
        "union_specifier": "struct",
    },
    "cpp": {
        "function_definition": "function",
        "class_specifier": "class",
        "struct_specifier": "struct",
        "enum_specifier": "enum",
        "namespace_definition": "namespace",
    },
    "c_sharp": {
        "class_declaration": "class",
        "interface_declaration": "interface",
        "struct_declaration": "struct",
        "enum_declaration": "enum",
        "record_declaration": "class",
        "method_declaration": "method",
        "constructor_declaration": "constructor",
        "namespace_declaration": "namespace",
    },
    "ruby": {
        "method": "method",
        "singleton_method": "method",
        "class": "class",
        "module": "module",
    },
}
_DEFS["tsx"] = _DEFS["typescript"]
# Nodes that wrap a definition and belong to it (decorators, export, template<...>).
_WRAPPERS = {"decorated_definition", "export_statement", "template_declaration"}
# `const f = () => ...` in JavaScript/TypeScript.
_VARIABLE_DECLS = {"lexical_declaration", "variable_declaration"}
_FUNCTION_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}
_CLASS_KINDS = {"class", "interface", "struct", "impl", "trait", "module", "namespace", "enum"}
_NAME_TYPES = {
    "identifier",
    "field_identifier",
    "type_identifier",
    "property_identifier",
    "qualified_identifier",
    "destructor_name",
    "operator_name",
    "constant",
    "scoped_identifier",
    "namespace_identifier",
}
MAX_SIGNATURE_CHARS = 200


@dataclass(frozen=True)
class Chunk:
    id: str
    path: str  # workspace-relative POSIX path
    language: str
    symbol: str | None  # qualified: "Class.method"
    kind: str  # function, method, class, ..., code (between definitions), text (line window)
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    text: str
    file_hash: str
    parent: str | None = None  # enclosing class/impl/module
    signature: str | None = None
    # Bare names whose definition starts in this chunk (merged neighbours and the members of a
    # namespace, module or class kept whole included): what retrieval looks up when the cursor
    # uses a name (retrieval.cursor_names).
    defines: tuple[str, ...] = ()

    def header(self) -> str:
        """A short provenance line that goes in front of the text for embedding and search."""
        label = self.signature or self.symbol or ""
        if self.parent and self.signature:
            label = f"{self.parent}: {label}"
        return f"{self.path} {self.kind} {label}".strip()


@dataclass(frozen=True)
class _Seg:
    start: int  # 0-based line, inclusive
    end: int
    kind: str
    symbol: str | None
    parent: str | None
    signature: str | None
    is_def: bool
    names: tuple[str, ...] = ()  # definitions that start in this segment


def new_parser(language: str) -> Any:
    """A tree-sitter parser of a language (a parser is not shared between threads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tree-sitter-languages warns about a deprecated API
        from tree_sitter_languages import get_parser

        return get_parser(language)


_parser = cache(new_parser)


class Chunker:
    """Splits one file's text into chunks within a size window (in lines)."""

    def __init__(self, chunk_lines: int = 60, chunk_overlap: int = 10) -> None:
        self.max_lines = chunk_lines
        self.overlap = min(chunk_overlap, chunk_lines // 2)
        self.min_lines = max(3, chunk_lines // 6)

    def chunk(self, path: str, text: str, file_hash: str) -> list[Chunk]:
        language = language_for(path)
        lines = text.splitlines()
        if not lines:
            return []
        segments: list[_Seg] | None = None
        if language in _DEFS:
            try:
                segments = self._code_segments(language, text, len(lines))
            except (ValueError, RuntimeError):  # grammar missing/broken: fall back to windows
                segments = None
        if segments is None:
            segments = self._windows(0, len(lines) - 1, "text", None, None, None, False)
        segments = [seg for seg in segments if _has_content(lines, seg)]
        return self._to_chunks(path, language, lines, segments, file_hash)

    # ------------------------------------------------------------------ tree-sitter

    def _code_segments(self, language: str, text: str, n_lines: int) -> list[_Seg]:
        source = text.encode("utf-8", errors="surrogatepass")
        tree = _parser(language).parse(source)
        defs = list(_child_defs(tree.root_node, language))
        segments = self._segments(0, n_lines - 1, defs, None, source, language)
        return self._merge(segments)

    def _segments(
        self,
        start: int,
        end: int,
        defs: list[tuple[Any, Any, str]],
        parent: str | None,
        source: bytes,
        language: str,
    ) -> list[_Seg]:
        out: list[_Seg] = []
        cursor = start
        for outer, inner, kind in defs:
            d_start, d_end = outer.start_point[0], outer.end_point[0]
            if outer.end_point[1] == 0 and d_end > d_start:
                d_end -= 1
            d_start = max(d_start, cursor)
            if d_start > d_end or d_end > end:
                d_end = min(d_end, end)
                if d_start > d_end:
                    continue
            if d_start > cursor:
                out.extend(self._windows(cursor, d_start - 1, "code", parent, parent, None, False))
            out.extend(
                self._def_segments(outer, inner, kind, d_start, d_end, parent, source, language)
            )
            cursor = d_end + 1
        if cursor <= end:
            out.extend(self._windows(cursor, end, "code", parent, parent, None, False))
        return out

    def _def_segments(
        self,
        outer: Any,
        inner: Any,
        kind: str,
        start: int,
        end: int,
        parent: str | None,
        source: bytes,
        language: str,
    ) -> list[_Seg]:
        name, receiver = _name_of(inner, language, source)
        if language == "python" and kind == "function" and parent is not None:
            kind = "method"
        owner = parent or receiver
        if kind == "function" and receiver:
            kind = "method"
        symbol = f"{owner}.{name}" if owner and name else name
        signature = _signature(inner, source)
        names = _defined_names(name, kind)
        if end - start + 1 <= self.max_lines:
            # Kept whole: the names its members define (a namespace's classes, their methods)
            # start in this chunk too.
            names = (*names, *_member_names(inner, kind, language, source))
            return [_Seg(start, end, kind, symbol, owner, signature, True, names)]
        nested = list(_child_defs(inner, language))
        if nested:
            parts = self._segments(start, end, nested, symbol, source, language)
        else:
            parts = self._windows(start, end, kind, symbol, owner, signature, True)
        if parts and parts[0].start == start:
            first = parts[0]
            if nested and not first.is_def:
                first = _Seg(first.start, first.end, kind, symbol, owner, signature, True)
            parts[0] = replace(first, names=(*names, *first.names))
        return parts

    # ------------------------------------------------------------------ sizing

    def _windows(
        self,
        start: int,
        end: int,
        kind: str,
        symbol: str | None,
        parent: str | None,
        signature: str | None,
        is_def: bool,
    ) -> list[_Seg]:
        """Overlapping windows of at most `max_lines` covering [start, end]."""
        out = []
        step = max(1, self.max_lines - self.overlap)
        position = start
        while True:
            stop = min(end, position + self.max_lines - 1)
            out.append(_Seg(position, stop, kind, symbol, parent, signature, is_def))
            if stop >= end:
                break
            position += step
            # a short last window is folded into the previous one's overlap instead
            if end - position + 1 <= self.overlap:
                break
        return out

    def _merge(self, segments: list[_Seg]) -> list[_Seg]:
        """Merge tiny neighbours while the result stays within the window."""
        out: list[_Seg] = []
        for seg in segments:
            if out:
                last = out[-1]
                tiny = (last.end - last.start + 1) < self.min_lines or (
                    seg.end - seg.start + 1
                ) < self.min_lines
                fits = seg.end - last.start + 1 <= self.max_lines
                adjacent = seg.start > last.end
                if tiny and fits and adjacent:
                    lead = max((last, seg), key=_weight)
                    out[-1] = _Seg(
                        last.start,
                        seg.end,
                        lead.kind,
                        lead.symbol,
                        lead.parent,
                        lead.signature,
                        last.is_def or seg.is_def,
                        (*last.names, *seg.names),
                    )
                    continue
            out.append(seg)
        return out

    def _to_chunks(
        self, path: str, language: str, lines: list[str], segments: list[_Seg], file_hash: str
    ) -> list[Chunk]:
        chunks: list[Chunk] = []
        seen: dict[str, int] = {}
        for seg in segments:
            body = "\n".join(lines[seg.start : seg.end + 1])
            key = "\0".join([path, seg.kind, seg.symbol or "", seg.parent or "", body])
            digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12)
            base = digest.hexdigest()
            count = seen.get(base, 0)
            seen[base] = count + 1
            chunk_id = base if count == 0 else f"{base}-{count}"
            chunks.append(
                Chunk(
                    id=chunk_id,
                    path=path,
                    language=language,
                    symbol=seg.symbol,
                    kind=seg.kind,
                    start_line=seg.start + 1,
                    end_line=seg.end + 1,
                    text=body,
                    file_hash=file_hash,
                    parent=seg.parent,
                    signature=seg.signature,
                    defines=tuple(dict.fromkeys(seg.names)),
                )
            )
        return chunks


def _defined_names(name: str | None, kind: str) -> tuple[str, ...]:
    """The bare name a definition makes known (`A::g` -> `g`); an impl block or a namespace
    defines no name of its own (its type or contents are defined elsewhere)."""
    if not name or kind in ("impl", "namespace"):
        return ()
    bare = re.split(r"::|\.", name)[-1]
    return (bare,) if re.fullmatch(r"[A-Za-z_$][\w$]*", bare) else ()


def _member_names(node: Any, kind: str, language: str, source: bytes) -> tuple[str, ...]:
    """Names defined inside a container (namespace, module, class, impl...), nested ones
    included; a function's own locals are not reachable from other files and are left out."""
    if kind not in _CLASS_KINDS:
        return ()
    names: list[str] = []
    for _, inner, member_kind in _child_defs(node, language):
        name, _ = _name_of(inner, language, source)
        names.extend(_defined_names(name, member_kind))
        names.extend(_member_names(inner, member_kind, language, source))
    return tuple(names)


def _weight(seg: _Seg) -> tuple[bool, int]:
    """Which of two merged segments names the result: a definition, then the longer one."""
    return seg.is_def, seg.end - seg.start


def _has_content(lines: list[str], seg: _Seg) -> bool:
    return any(line.strip() for line in lines[seg.start : seg.end + 1])


# ---------------------------------------------------------------------- tree helpers


def _def_kind(node: Any, language: str) -> tuple[Any, str] | None:
    """(definition node, kind) when `node` is or wraps a definition."""
    table = _DEFS[language]
    if node.type in table:
        if (
            language in ("c", "cpp")
            and node.type != "function_definition"
            and node.child_by_field_name("body") is None  # `struct P p;` is a use, not a def
        ):
            return None
        if language == "go" and node.type == "type_declaration":
            return node, "type"
        return node, table[node.type]
    if node.type in _WRAPPERS:
        for child in node.named_children:
            found = _def_kind(child, language)
            if found is not None:
                return found
    if node.type in _VARIABLE_DECLS and language in ("javascript", "typescript", "tsx"):
        for declarator in node.named_children:
            value = declarator.child_by_field_name("value")
            if value is not None and value.type in _FUNCTION_VALUES:
                return declarator, "function"
    return None


def _child_defs(node: Any, language: str) -> Iterator[tuple[Any, Any, str]]:
    """First-level definitions below `node` as (outer range node, definition node, kind)."""
    stack = list(reversed(node.named_children))
    while stack:
        child = stack.pop()
        found = _def_kind(child, language)
        if found is not None:
            yield child, found[0], found[1]
            continue
        stack.extend(reversed(child.named_children))


def _text(node: Any, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _name_of(node: Any, language: str, source: bytes) -> tuple[str | None, str | None]:
    """(name, receiver/owner type) of a definition node."""
    receiver = None
    if language == "go" and node.type == "method_declaration":
        params = node.child_by_field_name("receiver")
        if params is not None:
            types = re.findall(r"[A-Za-z_]\w*", _text(params, source))
            receiver = types[-1] if types else None
    if language == "go" and node.type == "type_declaration":
        for spec in node.named_children:
            name = spec.child_by_field_name("name")
            if name is not None:
                return _text(name, source), None
    if language == "rust" and node.type == "impl_item":
        type_node = node.child_by_field_name("type")
        trait = node.child_by_field_name("trait")
        name = _text(type_node, source) if type_node is not None else None
        if trait is not None and name:
            return f"{name}", None
        return name, None
    name_node = node.child_by_field_name("name")
    if name_node is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.type not in _NAME_TYPES:
            nxt = declarator.child_by_field_name("declarator")
            if nxt is None:
                nxt = next((c for c in declarator.named_children if c.type in _NAME_TYPES), None)
            declarator = nxt
        name_node = declarator
    if name_node is None:
        return None, receiver
    name = _text(name_node, source)
    if "::" in name and receiver is None:  # C++ `int A::g()` is a method of A
        owner, _, short = name.rpartition("::")
        return short, owner
    return name, receiver


def _signature(node: Any, source: bytes) -> str | None:
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    text = source[node.start_byte : end].decode("utf-8", errors="replace")
    if body is None:
        text = text.split("\n", 1)[0]
    text = " ".join(text.split()).rstrip("{:= ").strip()
    if not text:
        return None
    return text[:MAX_SIGNATURE_CHARS]


def chunk_file(
    path: str, text: str, file_hash: str, chunk_lines: int = 60, chunk_overlap: int = 10
) -> list[Chunk]:
    """Convenience wrapper: the chunks of one file."""
    return Chunker(chunk_lines, chunk_overlap).chunk(path, text, file_hash)
