"""One exception family for medimg.

Every error a *user* can cause (a bad file, an unusable series, a wrong config) is a :class:`MedimgError`.
The CLI prints such an error as one line on stderr and exits with code 2; anything else escaping is a bug in
medimg and keeps its traceback (exit code 1).

Messages name the file and say what to do. They never carry patient identifiers: only paths the user gave,
DICOM tags by number and name, UIDs and technical values.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "ConfigError",
    "DicomReadError",
    "ImageValueError",
    "MedimgError",
    "ModelError",
    "NoPixelDataError",
    "NotDicomError",
    "ReviewError",
    "SeriesGeometryError",
    "SeriesSelectionError",
    "UnsupportedTransferSyntaxError",
]


class MedimgError(Exception):
    """Base class of every error a user of medimg can cause and fix.

    Args:
        message: what is wrong and what to do about it, as one sentence or two.
        path: the file or folder concerned, if any; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        # one line, always: a message may quote a library's multi-line error (pydicom lists every decoder's)
        message = re.sub(r"\s*\n\s*", "; ", message.strip())
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class NotDicomError(MedimgError):
    """The file is neither DICOM (Part 10 or raw) nor another format medimg reads."""


class DicomReadError(MedimgError):
    """The file claims to be DICOM but cannot be parsed or decoded (truncated, corrupt, absurd header)."""


class NoPixelDataError(MedimgError):
    """A DICOM object without an image: Structured Report, RT Structure Set, Presentation State, ..."""


class UnsupportedTransferSyntaxError(MedimgError):
    """No installed pixel-data decoder handles the file's Transfer Syntax (0002,0010)."""


class SeriesGeometryError(MedimgError):
    """The slices of a series do not form a regular 3D grid (gaps, duplicates, non-parallel, mixed sizes)."""


class SeriesSelectionError(MedimgError):
    """A folder holds no usable series, or several, and the caller did not say which one to load."""


class ImageValueError(MedimgError):
    """Voxel values that would poison training, e.g. NaN or infinite values in a NIfTI file."""


class ModelError(MedimgError):
    """An unknown model name, a weights file that does not fit the architecture, a wrong input shape."""


class ConfigError(MedimgError):
    """A configuration value or command-line option that cannot work."""


class ReviewError(MedimgError):
    """A reading session or review store that cannot work: no reader name, an unreadable or newer store, an
    answer outside the form's choices, a case that is not on the worklist."""
