"""Reading a vendor's private element by its Private Creator, the one way the vendor files (``ge.py``,
``philips.py``, ``siemens.py``) get at private tags.

A private element (gggg,xxyy) belongs to the block that Private Creator (gggg,00xx) reserves (PS3.5 7.8.1), so
the same creator's element can sit at (gggg,10yy) in one file and (gggg,11yy) in another; pydicom's
``Dataset.private_block`` resolves that. What this module adds: the value as numbers whatever the file's VR says
(implicit-VR files carry private elements as ``UN`` bytes when pydicom's private dictionary lacks them).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

__all__ = ["private_numbers", "private_text", "private_value"]


def private_value(ds: Dataset, group: int, creator: str, offset: int) -> Any:
    """The value of private element (group, xxOO) reserved by ``creator``, or None when absent.

    Looks the Private Creator elements (gggg,0010-00FF) up in the data set's element dict directly: pydicom's
    ``private_block`` slices the whole data set on every call, which made it most of a GE folder scan.
    """
    elements = ds._dict
    for block in range(0x10, 0x100):
        elem = elements.get(BaseTag((group << 16) | block))
        if elem is None:
            continue
        value = ds[BaseTag((group << 16) | block)].value
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if str(value).strip(" \0") != creator:
            continue
        tag = BaseTag((group << 16) | (block << 8) | offset)
        if tag not in elements:
            return None
        try:
            found = ds[tag].value
        except (KeyError, ValueError, TypeError):
            return None
        return None if found is None or found == "" else found
    return None


def private_numbers(ds: Dataset, group: int, creator: str, offset: int, binary: str = "") -> list[float] | None:
    """Every value of a numeric private element as finite floats, or None when absent or not numbers.

    ``binary`` is the :mod:`struct` code used when the element arrives as raw bytes (``"f"`` for FL, ``"h"`` for
    SS, ``"d"`` for FD); without it bytes are read as the backslash-separated text of an IS/DS value.
    """
    value = private_value(ds, group, creator, offset)
    if value is None:
        return None
    if isinstance(value, bytes):
        if binary:
            size = struct.calcsize("<" + binary)
            if not value or len(value) % size:
                return None
            value = list(struct.unpack(f"<{len(value) // size}{binary}", value))
        else:
            value = value.decode("ascii", "replace").strip(" \0").split("\\")
    items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    try:
        out = [float(str(v).strip()) if isinstance(v, str) else float(v) for v in items]
    except (TypeError, ValueError, OverflowError):
        return None
    return out if out and all(math.isfinite(v) for v in out) else None


def private_text(ds: Dataset, group: int, creator: str, offset: int) -> str | None:
    """A private text element (CS/LO/SH, or UN bytes) stripped, or None when absent."""
    value = private_value(ds, group, creator, offset)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = str(value).strip(" \0")
    return text or None
