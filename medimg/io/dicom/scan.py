"""``medimg.io.dicom.scan``: find every DICOM series under a folder, reading each file's header once."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medimg.errors import MedimgError, NotDicomError, SeriesSelectionError
from medimg.io.dicom.header import FileHeader, read_header
from medimg.io.dicom.series import DERIVED_SOP_CLASSES, Series, group_series

if TYPE_CHECKING:
    from medimg.io.dicom.derived_listing import DerivedObject

__all__ = ["ScanResult", "iter_files", "scan"]

log = logging.getLogger(__name__)

#: From how many files a folder's headers are read by forked processes: a fork costs ~30 ms, a header ~1 ms, so
#: from about 64 files two cores pay back (a 150-file GE series: 0.17 s serial, 0.09 s with two processes).
POOL_MIN_FILES = 64

#: How many series keys an error names before it says how many more there are.
LISTED_KEYS = 4


@dataclass
class ScanResult:
    """What :func:`scan` found: the series, and the files it could not use (path -> reason).

    Shown as a table by :mod:`medimg.viz.tables` (``scan_text`` for a terminal, ``ScanTable`` in a notebook).
    """

    series: list[Series]
    skipped: dict[str, str] = field(default_factory=dict)
    derived: list[DerivedObject] = field(default_factory=list)  # DICOM SEG / Parametric Map objects found

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> Series:
        return self.series[i]

    def find(self, key: str) -> Series:
        """The series whose key (``UID`` or ``UID#part``) or UID is ``key``."""
        matches = [s for s in self.series if key in (s.key, s.series_uid)]
        if len(matches) == 1:
            return matches[0]
        keys = [s.key for s in self.series]
        known = ", ".join(keys[:LISTED_KEYS]) or "none"
        if len(keys) > LISTED_KEYS:
            known += f" and {len(keys) - LISTED_KEYS} more (medimg scan lists them all)"
        if not matches:
            raise SeriesSelectionError(f"no series {key!r} here; series found: {known}")
        raise SeriesSelectionError(f"series UID {key!r} has {len(matches)} parts; pick one of: {known}")


def iter_files(root: str | os.PathLike[str]) -> Iterator[str]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order; hidden files skipped."""
    root = os.fspath(root)
    if os.path.isfile(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield os.path.join(dirpath, name)


def _dicomdir_files(path: str) -> list[str]:
    """Files referenced by a DICOMDIR (Media Storage Directory), resolved on disk."""
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    try:
        fs = FileSet(dcmread(path))
    except Exception as exc:  # pydicom raises ValueError/KeyError/AttributeError for broken directories
        raise MedimgError(f"cannot read DICOMDIR ({type(exc).__name__}: {exc})", path) from exc
    return sorted(str(inst.path) for inst in fs)


def _read_one(path: str) -> FileHeader | MedimgError:
    try:
        return read_header(path)
    except MedimgError as exc:
        return exc


def read_headers(paths: list[str], workers: int | None = None) -> tuple[list[FileHeader], dict[str, str]]:
    """Read the header of every path once; return the DICOM ones and the reasons the others were skipped.

    Folders of :data:`POOL_MIN_FILES` files or more are read by ``workers`` forked processes (default: one per core);
    ``workers=1`` reads sequentially.
    """
    headers: list[FileHeader] = []
    skipped: dict[str, str] = {}

    n = workers or (os.cpu_count() or 1)
    # fork only from a single-threaded process (forking a process with live threads, e.g. a Jupyter kernel or
    # a DataLoader, can deadlock); elsewhere read sequentially.
    forkable = threading.active_count() == 1 and multiprocessing.get_start_method(allow_none=True) in (None, "fork")
    if n <= 1 or len(paths) < POOL_MIN_FILES or not forkable:
        results = [_read_one(p) for p in paths]
    else:
        # Header parsing is pure Python and holds the GIL (threads made it slower): use forked processes,
        # each parsing a contiguous chunk, so a large folder scales with the cores.
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(n, mp_context=ctx) as pool:
            results = list(pool.map(_read_one, paths, chunksize=max(16, len(paths) // (4 * n))))
    damaged: list[MedimgError] = []
    for p, r in zip(paths, results, strict=True):
        if isinstance(r, MedimgError):
            skipped[p] = r.reason
            if not isinstance(r, NotDicomError):
                damaged.append(r)
        else:
            headers.append(r)
    if damaged:  # one line, not one per file: a broken export can hold thousands
        log.warning("skipped %d damaged DICOM file(s), first: %s", len(damaged), damaged[0])
    return headers, skipped


def scan(root: str | os.PathLike[str], *, workers: int | None = None) -> ScanResult:
    """Find the DICOM series under ``root`` (a folder, a single file, or a DICOMDIR).

    Every file is opened once, for its header only (pixel data is not read). Non-DICOM files are skipped and
    listed in ``ScanResult.skipped``; damaged DICOM files are skipped with a warning naming them. Series are
    grouped by Series Instance UID and split where one UID cannot be one volume (see
    :mod:`medimg.io.dicom.series`); each series carries its QA ``problems``.

    Example::

        >>> for s in medimg.io.dicom.scan("data/raw/case01"):          # doctest: +SKIP
        ...     print(s.key, s.modality, s.shape, [str(p) for p in s.problems])
    """
    path = Path(root)
    if not path.exists():
        raise MedimgError("no such file or folder", path)
    if path.is_file():
        header = read_header(path)  # a lone file that is not DICOM is an error, not a skip
        if not header.is_dicomdir:
            return _result([header], {})
        paths = _dicomdir_files(str(path))
    else:
        paths = list(iter_files(path))
    headers, skipped = read_headers(paths, workers)
    return _result(headers, skipped)


def _result(headers: list[FileHeader], skipped: dict[str, str]) -> ScanResult:
    """Image series, plus the DICOM SEG / Parametric Map objects among the files with the series they reference."""
    from medimg.io.dicom.derived_listing import derived_objects

    series = group_series(headers)
    derived = [h for h in headers if h.sop_class in DERIVED_SOP_CLASSES]
    return ScanResult(series, skipped, derived=derived_objects(derived, series) if derived else [])
