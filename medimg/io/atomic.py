"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Write to a temporary file in the destination folder (same file system), flush it to disk, then rename it over
the destination with :func:`os.replace`, which POSIX and Windows both perform atomically. A failure on the way
removes the temporary file and leaves the destination untouched.

The file ends with the permissions a plain ``open(dest, "w")`` would give it: those of the file it replaces, or
``0o666`` less the user's umask for a new file (``tempfile.mkstemp`` creates 0600, which would hide results from a
colleague or a container user in the same group).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "current_umask", "default_file_mode"]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc/self/status`` on Linux).

    Elsewhere it falls back to setting and restoring it, which is not thread-safe but brief.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode(dest: Path) -> int:
    """Permission bits for ``dest``: kept from the existing file, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


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
        os.chmod(tmp, default_file_mode(dest))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
