"""A radiologist's review of a result, as a DICOM Key Object Selection document (PS3.3 A.35.4, TID 2010).

The KOS flags the objects the review was about (the DICOM SEG and the Parametric Map of a case) with the Key
Object Selection Document Title "Of Interest" (DCM 113000) and carries the review -- verdict, localisation
score, reviewer, checkpoint -- as its Key Object Description (TEXT, at most 1024 characters). A PACS files it
under the study of the objects it references; viewers list it with them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from medimg.errors import MedimgError
from medimg.io.atomic import atomic_path
from medimg.io.derived.concepts import new_instance

__all__ = ["write_key_objects"]

_MAX_TEXT = 1024  # TEXT content item (Text Value (0040,A160), UT) kept short enough for any viewer
_KOS_SERIES_NUMBER = 902


def write_key_objects(
    referenced: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    description: str,
    reviewer: str | None = None,
) -> Path:
    """Write a Key Object Selection document selecting ``referenced`` (DICOM files of one study) as
    "Of Interest", with ``description`` as the Key Object Description and ``reviewer`` as the person observer.

    Raises:
        MedimgError: nothing to reference, objects of several studies, or highdicom refusing the content.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    out = Path(out)
    if not referenced:
        raise MedimgError("a Key Object Selection needs at least one object to reference", out)
    evidence = [pydicom.dcmread(p, stop_before_pixels=True) for p in referenced]
    if len({str(ds.StudyInstanceUID) for ds in evidence}) != 1:
        raise MedimgError("the referenced objects belong to several studies; one KOS selects within one study", out)
    observer = None
    if reviewer:
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=reviewer[:64]),
        )
    try:
        content = hd.ko.KeyObjectSelection(
            document_title=codes.DCM.OfInterest,
            referenced_objects=evidence,
            observer_person_context=observer,
            description=description[:_MAX_TEXT],
        )
        kos = hd.ko.KeyObjectSelectionDocument(
            evidence=evidence,
            content=content,
            **new_instance(_KOS_SERIES_NUMBER),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise MedimgError(f"highdicom refused the Key Object Selection ({type(exc).__name__}: {exc})", out) from exc
    with atomic_path(out) as tmp:
        kos.save_as(tmp)
    return out
