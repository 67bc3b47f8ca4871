"""A GGUF file's layout, read with a bound check on every field before llama.cpp sees the file.

The `gguf` package's GGUFReader builds a numpy view per metadata item, which on a vocabulary
of 262,144 tokens costs seconds at every server start and model reload (README: Models and
caches). This walks the same structure (header, metadata, tensor infos; GGUF v2 and v3) with
`struct` over a memory map, skipping fixed-size arrays whole, and reports where the tensor data
ends, so a truncated or malformed file is refused with a reason. Type sizes come from `gguf`.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

GGUF_MAGIC = b"GGUF"
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 8  # arrays of arrays: no model writes more than one level
DEFAULT_ALIGNMENT = 32
ALIGNMENT_KEY = "general.alignment"
_LENGTH = struct.Struct("<Q")
SCALAR_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class GGUFLayoutError(ValueError):
    """The file is not a well-formed GGUF file; the message says where and why."""


MetadataValue = str | int | float | bool


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: ne0 (the row length) first
    type: int  # a GGMLQuantizationType value
    offset: int  # where its data starts in the file
    n_bytes: int


@dataclass(frozen=True)
class GGUFLayout:
    version: int
    # Scalar and string values by key; an array is recorded by its length (a vocabulary's
    # 262,144 strings are skipped, not read).
    metadata: dict[str, MetadataValue]
    tensors: tuple[TensorInfo, ...]
    data_start: int  # the first byte of tensor data (aligned)
    data_end: int  # one past the last byte any tensor needs


class _Cursor:
    """Reads little-endian fields from a buffer, refusing to run past its end."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.offset = 0

    def take(self, size: int, what: str) -> int:
        """Advance over `size` bytes; the offset they start at."""
        start = self.offset
        if size < 0 or start + size > len(self.buffer):
            raise GGUFLayoutError(f"{what} at byte {start} runs past the end of the file")
        self.offset = start + size
        return start

    def scalar(self, fmt: str, what: str) -> int | float | bool:
        start = self.take(struct.calcsize(fmt), what)
        value: int | float | bool = struct.unpack_from(fmt, self.buffer, start)[0]
        return value

    def count(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str) -> bytes:
        length = self.count(f"{what} length")
        return bytes(self.buffer[self.take(length, what) : self.offset])

    def text(self, what: str) -> str:
        try:
            return self.string(what).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFLayoutError(f"{what} is not UTF-8 (byte {self.offset})") from None


def _value_type(raw: int, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise GGUFLayoutError(f"{what} has an unknown value type {raw}") from None


def _skip_strings(cursor: _Cursor, count: int, what: str) -> None:
    """An array of strings (a vocabulary: 262,144 of them), in one tight loop."""
    buffer, offset, end = cursor.buffer, cursor.offset, len(cursor.buffer)
    length_of = _LENGTH.unpack_from
    for _ in range(count):
        if offset + 8 > end:
            raise GGUFLayoutError(f"{what} at byte {offset} runs past the end of the file")
        offset += 8 + length_of(buffer, offset)[0]
        if offset > end:
            raise GGUFLayoutError(f"{what}: a string runs past the end of the file")
    cursor.offset = offset


def _read_value(cursor: _Cursor, kind: GGUFValueType, what: str) -> MetadataValue:
    """A top-level metadata value: a scalar, a string, or an array's length."""
    if kind == GGUFValueType.STRING:
        return cursor.string(what).decode("utf-8", errors="replace")
    if kind == GGUFValueType.ARRAY:
        start = cursor.offset
        _skip_value(cursor, kind, what)
        return int(struct.unpack_from("<Q", cursor.buffer, start + 4)[0])
    return cursor.scalar(SCALAR_FORMATS[kind], what)


def _skip_value(cursor: _Cursor, kind: GGUFValueType, what: str, depth: int = 0) -> None:
    if kind == GGUFValueType.STRING:
        cursor.string(what)
    elif kind == GGUFValueType.ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFLayoutError(f"{what} nests arrays more than {MAX_ARRAY_DEPTH} deep")
        item = _value_type(int(cursor.scalar("<I", f"{what} item type")), what)
        count = cursor.count(f"{what} length")
        if item in SCALAR_FORMATS:
            cursor.take(count * struct.calcsize(SCALAR_FORMATS[item]), what)
            return
        if count > len(cursor.buffer) - cursor.offset:  # every item takes at least one byte
            raise GGUFLayoutError(f"{what} claims {count} items, more than the file holds")
        if item == GGUFValueType.STRING:
            _skip_strings(cursor, count, what)
            return
        for _ in range(count):
            _skip_value(cursor, item, what, depth + 1)
    else:
        cursor.take(struct.calcsize(SCALAR_FORMATS[kind]), what)


def _tensor_bytes(kind: int, dims: list[int], name: str) -> int:
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ValueError, KeyError):
        raise GGUFLayoutError(f"tensor {name!r} has an unknown type {kind}") from None
    elements = 1
    for dim in dims:
        elements *= dim
    if dims and dims[0] % block:
        raise GGUFLayoutError(f"tensor {name!r}: row of {dims[0]} is not whole {block}-blocks")
    return elements // block * size


def read_layout(path: Path) -> GGUFLayout:
    """The layout of the GGUF file at `path`; raises GGUFLayoutError for a malformed one (and
    OSError where it cannot be read). Nothing in the file is trusted: every count and length is
    checked against the file's size before it is used."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size < 24:
            raise GGUFLayoutError(f"{size} bytes: too short for a GGUF header")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buffer = memoryview(mapped)
            try:
                return _walk(_Cursor(buffer), size)
            finally:
                buffer.release()


def _walk(cursor: _Cursor, size: int) -> GGUFLayout:
    if bytes(cursor.buffer[cursor.take(4, "magic") : 4]) != GGUF_MAGIC:
        raise GGUFLayoutError("bad magic: not a GGUF file")
    version = int(cursor.scalar("<I", "version"))
    if version not in (2, 3):
        raise GGUFLayoutError(f"unsupported GGUF version {version}")
    tensor_count = cursor.count("tensor count")
    key_count = cursor.count("metadata count")
    if tensor_count > size or key_count > size:
        raise GGUFLayoutError(f"claims {tensor_count} tensors, {key_count} keys: more than fit")
    metadata: dict[str, MetadataValue] = {}
    for index in range(key_count):
        key = cursor.text(f"metadata key {index}")
        if key in metadata:
            raise GGUFLayoutError(f"metadata key {key!r} appears twice")
        kind = _value_type(int(cursor.scalar("<I", f"{key} type")), key)
        if key == ALIGNMENT_KEY and kind != GGUFValueType.UINT32:
            raise GGUFLayoutError(f"{ALIGNMENT_KEY} is not a uint32")
        metadata[key] = _read_value(cursor, kind, key)
    alignment = int(metadata.get(ALIGNMENT_KEY, DEFAULT_ALIGNMENT))
    if alignment <= 0 or alignment & (alignment - 1):
        raise GGUFLayoutError(f"{ALIGNMENT_KEY} {alignment} is not a power of two")
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    names: set[str] = set()
    for index in range(tensor_count):
        name = cursor.text(f"tensor {index} name")
        if name in names:
            raise GGUFLayoutError(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = int(cursor.scalar("<I", f"tensor {name!r} dimensions"))
        if n_dims > MAX_DIMS:
            raise GGUFLayoutError(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = [cursor.count(f"tensor {name!r} shape") for _ in range(n_dims)]
        tensor_type = int(cursor.scalar("<I", f"tensor {name!r} type"))
        offset = cursor.count(f"tensor {name!r} offset")
        if offset % alignment:
            raise GGUFLayoutError(f"tensor {name!r} offset {offset} is not aligned")
        infos.append((name, tuple(dims), tensor_type, offset))
    data_start = -(-cursor.offset // alignment) * alignment
    tensors = tuple(
        TensorInfo(name, shape, kind, data_start + offset, _tensor_bytes(kind, list(shape), name))
        for name, shape, kind, offset in infos
    )
    data_end = max((t.offset + t.n_bytes for t in tensors), default=data_start)
    return GGUFLayout(version, metadata, tensors, data_start, data_end)
