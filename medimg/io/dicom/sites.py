"""Which site (scanner, centre) a series comes from, proposed from its technical header attributes only.

A model trained at one hospital meets another's scanners: per-site metrics and leave-one-site-out splits need a
``site`` per case. ``medimg scan`` proposes one per series from the equipment and reconstruction attributes below;
the user copies it into the manifest's ``site`` column (or ``dataset.json``), merging or renaming as they know
better. Patient attributes (name, ID, birth date, accession number, ...) are never read: the proposal is a label
of the *equipment*, safe to print and to keep.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SITE_ATTRIBUTES", "propose_site"]

#: The attributes a site is proposed from, in the order they appear in it (DICOM PS3.6 keyword and tag):
#: (0008,0080) Institution Name, (0008,0070) Manufacturer, (0008,1090) Manufacturer's Model Name,
#: (0018,0087) Magnetic Field Strength in tesla (MR), (0018,1210) Convolution Kernel (CT reconstruction).
SITE_ATTRIBUTES = (
    "InstitutionName",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "ConvolutionKernel",
)


def _text(value: Any) -> str:
    """A header value as one short token-friendly string: multi-valued -> joined by '/', blanks collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "/".join(str(v) for v in value)
    return re.sub(r"\s+", " ", str(value)).strip()


def propose_site(header: Mapping[str, Any] | Any) -> str:
    """A site label for one series, e.g. ``"St Elsewhere | SIEMENS Skyra | 3T"`` or ``"GE MEDICAL SYSTEMS
    LightSpeed VCT | STANDARD"``; ``"unknown"`` when the header carries none of :data:`SITE_ATTRIBUTES`.

    ``header`` is a mapping of DICOM keywords to values (the sidecar ``medimg scan`` keeps per series) or a pydicom
    ``Dataset``. The field strength is rounded to 0.1 T (1.494 T and 1.5 T are one site); the manufacturer's name
    is not repeated when the model name already starts with it.
    """

    def get(keyword: str) -> Any:
        if isinstance(header, Mapping):
            return header.get(keyword)
        return getattr(header, keyword, None)

    parts: list[str] = []
    institution = _text(get("InstitutionName"))
    if institution:
        parts.append(institution)
    maker, model = _text(get("Manufacturer")), _text(get("ManufacturerModelName"))
    if model.upper().startswith(maker.upper()):
        maker = ""
    equipment = " ".join(p for p in (maker, model) if p)
    if equipment:
        parts.append(equipment)
    field = get("MagneticFieldStrength")
    try:
        tesla = float(field) if field not in (None, "") else None
    except (TypeError, ValueError):
        tesla = None
    if tesla:
        parts.append(f"{round(tesla, 1):g}T")
    kernel = _text(get("ConvolutionKernel"))
    if kernel:
        parts.append(kernel)
    return " | ".join(parts) or "unknown"
