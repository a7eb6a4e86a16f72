"""One PACS, one protocol: ``connect(pacs, via)`` -> a :class:`~medimg.pacs.remote.Remote`."""

from __future__ import annotations

from medimg.errors import ConfigError
from medimg.pacs.config import Pacs
from medimg.pacs.remote import Remote

__all__ = ["VIAS", "connect", "default_via"]

#: ``dicomweb``: QIDO/WADO/STOW-RS; ``dimse``: C-FIND/C-GET/C-STORE.
VIAS = ("dicomweb", "dimse")


def default_via(pacs: Pacs) -> str:
    """DICOMweb when the PACS has a URL, else DIMSE."""
    return "dicomweb" if pacs.dicomweb else "dimse"


def connect(pacs: Pacs, via: str | None = None) -> Remote:
    """The PACS reached over ``via`` (default :func:`default_via`)."""
    via = via or default_via(pacs)
    if via == "dicomweb":
        from medimg.pacs.dicomweb import DicomWebRemote

        pacs.require_dicomweb()
        return DicomWebRemote(pacs)
    if via == "dimse":
        from medimg.pacs.dimse import DimseRemote

        return DimseRemote(pacs)
    raise ConfigError(f"unknown protocol {via!r}; use one of {', '.join(VIAS)}")
