"""Coded concepts for segment classes, and the identification of the algorithm that made a result.

Viewers (OHIF, 3D Slicer) colour and name segments from Segmented Property Category / Type Code Sequences
(0062,0003)/(0062,000F). A class name that matches a SNOMED CT concept in pydicom's code dictionary
(``pydicom.sr.codedict.codes.SCT``, e.g. "spleen" -> 78961009) gets that concept; any other name gets the
generic category and type "Tissue" (SCT 85756007) and keeps its own name as the Segment Label (0062,0005).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.sr.coding import Code

__all__ = ["AlgorithmInfo", "class_concepts"]

_MAX_LO = 64  # Long String (LO) value length, PS3.5 6.2


@dataclass(frozen=True)
class AlgorithmInfo:
    """The algorithm behind a derived object, as Algorithm Identification Sequence (0066,002F) records it.

    Attributes:
        name: Algorithm Name (0066,0036), e.g. ``"medimg unet"``.
        version: Algorithm Version (0066,0031): the medimg version.
        parameters: Algorithm Parameters (0066,0032), e.g. ``{"net": "unet", "checkpoint_sha256": "..."}``.
    """

    name: str
    version: str
    parameters: Mapping[str, str] = field(default_factory=dict)

    def sequence(self) -> object:
        """A ``highdicom.AlgorithmIdentificationSequence`` (family: Artificial Intelligence, DCM 123110)."""
        import highdicom as hd
        from pydicom.sr.codedict import codes

        return hd.AlgorithmIdentificationSequence(
            name=self.name[:_MAX_LO],
            family=codes.cid7162.ArtificialIntelligence,
            version=self.version[:_MAX_LO],
            source="medimg",
            parameters={str(k): str(v) for k, v in self.parameters.items()},
        )


# Names that do not spell the SCT keyword but mean it (lower case, words joined by nothing).
_ALIASES = {
    "greymatter": "GrayMatter",
    "gm": "GrayMatter",
    "wm": "WhiteMatter",
    "csf": "CerebrospinalFluid",
    "tumour": "Tumor",
}
# SCT keywords that are abnormal structures rather than anatomy (CID 7150 category choice).
_ABNORMAL = {"Tumor", "Neoplasm", "Lesion", "Mass", "Nodule", "Cyst", "Edema", "Necrosis", "Hemorrhage"}


def _keyword(name: str) -> str:
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    joined = "".join(words).lower()
    if joined in _ALIASES:
        return _ALIASES[joined]
    return "".join(w[:1].upper() + w[1:].lower() for w in words)


def class_concepts(name: str) -> tuple[Code, Code]:
    """(category, type) codes for a class name: SNOMED CT where the name matches, else Tissue / Tissue.

    >>> class_concepts("spleen")[1].value
    '78961009'
    >>> class_concepts("my label")[1].meaning
    'Tissue'
    """
    from pydicom.sr.codedict import codes

    keyword = _keyword(name)
    concept: Code | None = None
    if keyword:
        try:
            concept = getattr(codes.SCT, keyword)
        except AttributeError:
            concept = None
    if concept is None:
        return codes.SCT.Tissue, codes.SCT.Tissue
    if keyword in _ABNORMAL:
        return codes.SCT.MorphologicallyAbnormalStructure, concept
    return codes.SCT.AnatomicalStructure, concept


def new_instance(series_number: int) -> dict[str, Any]:
    """The identity of a new derived object (SEG, Parametric Map, KOS) as highdicom's constructors take it: a new
    series and instance UID, its series number, instance 1, manufacturer "medimg" -- one place for all writers."""
    from pydicom.uid import generate_uid

    return {
        "series_instance_uid": generate_uid(),
        "series_number": series_number,
        "sop_instance_uid": generate_uid(),
        "instance_number": 1,
        "manufacturer": "medimg",
    }
