"""Writing files whole or not at all.

:func:`atomic_write` yields a binary file in the destination's folder and moves it over the
destination with ``os.replace`` once the block ends without an error, so a reader (another
thread or process) sees the old file or the complete new one, never a partial one. On any
error the temporary file is removed and the error raised. The folder must exist.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes"]


@contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without an error.

    The temporary file is ``.<name>.<random>.tmp`` in ``path``'s folder (the same file
    system, so the replacement is atomic). ``fsync``: flush it to the disk before the
    replacement (checkpoints; caches that can be recomputed skip it).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_write`."""
    with atomic_write(path, fsync=fsync) as handle:
        handle.write(data)
