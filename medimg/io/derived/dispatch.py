"""The hook ``medimg.io.load`` calls first: a DICOM SEG or Parametric Map file goes to its reader."""

from __future__ import annotations

import os
from pathlib import Path

from medimg.errors import ConfigError
from medimg.io.dicom.series import Series
from medimg.io.volume import Volume

__all__ = ["read_if_derived"]


def read_if_derived(
    path: str | os.PathLike[str], *, reference: str | os.PathLike[str] | Series | None = None
) -> Volume | None:
    """The volume of ``path`` if it is a SEG (labels) or Parametric Map (values), else None.

    Raises:
        ConfigError: ``reference`` was given for something that is neither.
    """
    from medimg.io.dicom.derived_listing import derived_kind

    p = Path(path)
    kind = derived_kind(p) if p.is_file() else None
    if kind == "SEG":
        from medimg.io.derived.seg_read import read_seg

        return read_seg(p, reference=reference)
    if kind == "PM":
        from medimg.io.derived.parametric_map import read_parametric_map

        return read_parametric_map(p, reference=reference)
    if reference is not None:
        raise ConfigError("reference= is for a DICOM SEG or Parametric Map file, and this is neither", p)
    return None
