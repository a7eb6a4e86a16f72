"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Write to a temporary file in the destination folder (same file system), flush it to disk, then rename it over
the destination with :func:`os.replace`, which POSIX and Windows both perform atomically. A failure on the way
removes the temporary file and leaves the destination untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it is renamed to ``dest``, on error deleted.

    The temporary name keeps ``dest``'s suffixes (``.nii.gz`` stays ``.nii.gz``) so writers that choose the
    format from the extension behave the same.

    Example::

        with atomic_path("out/ct.nii.gz") as tmp:
            nib.save(img, tmp)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes) or ".tmp"
    fd, name = tempfile.mkstemp(prefix=f".{dest.name.split('.')[0]}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
