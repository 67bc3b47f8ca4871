"""Reading a file that a repository controls, without letting it choose what is read.

A repository can hold (or link to) a FIFO, which blocks a reader forever, or a device such as
/dev/zero, which never ends: a committed `.gitignore -> /dev/zero` would make a plain read fill
memory. `read_regular_file` reads only a regular file, checks that on the descriptor it opened
(not only on the name, which can be swapped in between), never blocks on opening, and never
reads more than the caller's limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

READ_CHUNK_BYTES = 1 << 20
# Not on every platform: where a flag is missing, the stat checks still refuse what it would.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """The path is a FIFO, a device, a socket or a directory (or, where links are not
    followed, a symlink)."""


def file_kind(mode: int) -> str:
    """A word for a file type in an error message."""
    for check, word in (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
    ):
        if check(mode):
            return word
    return "not a regular file"


def read_regular_file(path: Path, limit: int, follow_links: bool = True) -> bytes:
    """At most `limit` bytes of `path`, which must be a regular file (and not a symlink when
    `follow_links` is False); raises NotRegularFile or the OSError of the failed read. A caller
    that must know whether the file is longer asks for one byte more than it accepts."""
    mode = os.stat(path, follow_symlinks=follow_links).st_mode
    if not stat.S_ISREG(mode):
        # Checked before opening: opening some devices (a tape drive) already does something.
        raise NotRegularFile(errno.EINVAL, f"not a regular file ({file_kind(mode)})", str(path))
    flags = os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow_links else _NOFOLLOW)
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):  # swapped after the first check
            raise NotRegularFile(errno.EINVAL, f"not a regular file ({file_kind(mode)})", str(path))
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(descriptor, min(remaining, READ_CHUNK_BYTES))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)
