"""Which series of a study to pull: rules on what ``medimg scan`` knows, instead of "the first series".

A rule set is applied twice: on what the PACS says before anything is downloaded (modality, description), and
on what :func:`medimg.io.dicom.scan.scan` finds in the files afterwards (also slice thickness and localizers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medimg.errors import ConfigError
from medimg.io.dicom.series import Series
from medimg.pacs.remote import SeriesInfo

__all__ = ["PLANES", "SeriesRules", "acquisition_plane", "parse_range"]

#: Acquisition planes a rule can ask for, by the slice axis: S/I -> axial, A/P -> coronal, L/R -> sagittal.
PLANES = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "L": "sagittal", "R": "sagittal"}


def parse_range(text: str) -> tuple[float, float]:
    """``"0.5-3"`` -> (0.5, 3.0); ``"2"`` -> (2.0, 2.0). Millimetres."""
    try:
        lo, _, hi = text.partition("-")
        low, high = float(lo), float(hi or lo)
    except ValueError:
        raise ConfigError(f"slice thickness range {text!r} is not MIN-MAX in mm (e.g. 0.5-3)") from None
    if not 0 <= low <= high:
        raise ConfigError(f"slice thickness range {text!r} must have 0 <= MIN <= MAX")
    return low, high


@dataclass(frozen=True)
class SeriesRules:
    """Series wanted: ``modalities`` ((0008,0060) Modality, any of), ``thickness_mm`` (MIN, MAX) of (0018,0050)
    Slice Thickness (else the slice step scan measured), ``description`` (a regular expression searched in
    (0008,103E) Series Description, case-insensitive), ``plane`` (axial, coronal or sagittal: the slice axis of
    (0020,0037) Image Orientation (Patient), nearest anatomical axis), and no localizer/scout unless ``localizer``."""

    modalities: frozenset[str] | None = None
    thickness_mm: tuple[float, float] | None = None
    description: str | None = None
    localizer: bool = False
    plane: str | None = None

    def __post_init__(self) -> None:
        if self.plane is not None and self.plane not in set(PLANES.values()):
            raise ConfigError(f"acquisition plane {self.plane!r} is not one of axial, coronal, sagittal")
        if self.description is not None:
            try:
                re.compile(self.description)
            except re.error as exc:
                raise ConfigError(f"series description pattern {self.description!r} is not a regex ({exc})") from None

    def _text_ok(self, modality: str, description: str) -> bool:
        if self.modalities is not None and modality.upper() not in self.modalities:
            return False
        return self.description is None or re.search(self.description, description, re.IGNORECASE) is not None

    def accepts_info(self, info: SeriesInfo) -> bool:
        """What can be decided before download, from the PACS's answer."""
        return self._text_ok(info.modality, info.description)

    def why_not(self, series: Series) -> str | None:
        """None when ``series`` (as scanned) is wanted, else the rule it fails."""
        if not self._text_ok(series.modality, series.description):
            return "modality or description"
        if series.localizer and not self.localizer:
            return "localizer"
        if self.plane is not None and acquisition_plane(series) != self.plane:
            return f"{acquisition_plane(series) or 'unknown'} plane, not {self.plane}"
        if self.thickness_mm is not None:
            thickness = _thickness(series)
            lo, hi = self.thickness_mm
            if thickness is None or not lo <= thickness <= hi:
                return f"slice thickness {thickness} mm outside {lo}-{hi} mm"
        return None


def _thickness(series: Series) -> float | None:
    try:
        value = float(series.header.sidecar.get("SliceThickness") or 0)
    except (TypeError, ValueError):
        value = 0.0
    if value > 0:
        return value
    spacing = series.spacing
    return None if spacing is None else abs(spacing[2])


def acquisition_plane(series: Series) -> str | None:
    """axial / coronal / sagittal: the anatomical axis nearest the slice normal (the third of the series' RAS
    axis codes, :attr:`Series.orientation`); None without geometry."""
    codes = series.orientation
    return None if not codes else PLANES.get(codes[2])
