"""Which files of a scan are DICOM SEG or Parametric Map objects, and which series each one references.

For ``medimg scan``: derived objects are results *about* a series, not image series to load, so they are
listed apart with the key of the series they reference (when that series is in the same scan).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.io.dicom.header import FileHeader
from medimg.io.dicom.series import DERIVED_SOP_CLASSES, Series

__all__ = ["DerivedObject", "derived_kind", "derived_objects", "derived_table"]


@dataclass(frozen=True)
class DerivedObject:
    """A SEG or Parametric Map file: its kind (``"SEG"``/``"PM"``), own Series Instance UID, the series it
    references (UIDs from Referenced Series Sequence (0008,1115), and their scan keys where found), its
    segment labels (SEG) or Content Description (0070,0081) (PM), and its number of frames."""

    path: str
    kind: str
    series_uid: str
    referenced_series_uids: tuple[str, ...]
    referenced_keys: tuple[str, ...]
    content: tuple[str, ...]
    frames: int

    def summary(self) -> dict[str, Any]:
        """JSON-ready, patient-free: what ``medimg scan --json`` can print per derived object."""
        return {
            "path": self.path,
            "kind": self.kind,
            "series_uid": self.series_uid,
            "references": list(self.referenced_series_uids),
            "referenced_keys": list(self.referenced_keys),
            "content": list(self.content),
            "frames": self.frames,
        }


def derived_kind(path: str | os.PathLike[str]) -> str | None:
    """``"SEG"`` or ``"PM"`` when ``path`` is a Part 10 file of such a SOP class, else None (cheap: reads
    only up to SOP Class UID (0008,0016); not DICOM, or unreadable, is None too)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        sop_class = str(ds.get("SOPClassUID", ""))
    except Exception:  # pydicom raises a zoo: struct.error, BytesLengthException, unknown VR, ...
        return None  # damaged or not DICOM: the image reader that runs next says what is wrong with it
    return DERIVED_SOP_CLASSES.get(sop_class)


def derived_objects(
    items: Iterable[FileHeader | str | os.PathLike[str]], series: Sequence[Series] = ()
) -> list[DerivedObject]:
    """The SEG / Parametric Map objects among ``items`` (file headers from a scan, or paths), sorted by path.

    ``series`` (the scan's image series) resolves the referenced Series Instance UIDs to ``medimg scan``
    keys. Headers are filtered by their SOP class without opening the file again; only derived objects are
    re-read (without pixel data).
    """
    import pydicom

    keys: dict[str, list[str]] = {}
    for s in series:
        keys.setdefault(s.series_uid, []).append(s.key)
    out = []
    for item in items:
        if isinstance(item, FileHeader):
            kind = DERIVED_SOP_CLASSES.get(item.sop_class)
            path = item.path
        else:
            path = os.fspath(item)
            kind = derived_kind(path)
        if kind is None:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        refs = tuple(str(r.SeriesInstanceUID) for r in ds.get("ReferencedSeriesSequence") or [])
        if kind == "SEG":
            content = tuple(str(s.get("SegmentLabel", "")) for s in ds.get("SegmentSequence") or [])
        else:
            content = (str(ds.get("ContentDescription", "")),)
        out.append(
            DerivedObject(
                path=path,
                kind=kind,
                series_uid=str(ds.get("SeriesInstanceUID", "")),
                referenced_series_uids=refs,
                referenced_keys=tuple(k for r in refs for k in keys.get(r, [])),
                content=content,
                frames=int(ds.get("NumberOfFrames", 1) or 1),
            )
        )
    return sorted(out, key=lambda d: d.path)


def derived_table(objects: Sequence[DerivedObject]) -> str:
    """Fixed-width text, one line per object: kind, file name, frames, what it holds, the series it references."""
    if not objects:
        return ""
    lines = ["derived objects (DICOM SEG / Parametric Map), with the series they reference:"]
    for d in objects:
        what = ", ".join(d.content)
        what = what if len(what) <= 48 else what[:45] + "..."
        target = ", ".join(d.referenced_keys) or (
            ", ".join(d.referenced_series_uids) + " (not in this scan)" if d.referenced_series_uids else "none"
        )
        lines.append(f"  {d.kind:<3}  {Path(d.path).name}  {d.frames} frames  [{what}]  -> {target}")
    return "\n".join(lines)
