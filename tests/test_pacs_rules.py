"""Series rules of ``medimg pacs pull`` on what ``scan`` finds: the acquisition plane from the slice normal,
slice thickness, description and localizers (no PACS needed: the rules judge scanned series)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import ConfigError
from medimg.io import Volume
from medimg.io.dicom.scan import scan
from medimg.io.dicom.write import write_series
from medimg.pacs.rules import SeriesRules, acquisition_plane, parse_range

#: RAS affines whose third (slice) axis runs S, A and L: an axial, a coronal and a sagittal acquisition
AFFINES = {
    "axial": np.diag([0.8, 0.8, 3.0, 1.0]),
    "coronal": np.array([[0.8, 0, 0, 0], [0, 0, 3.0, 0], [0, 0.8, 0, 0], [0, 0, 0, 1.0]]),
    "sagittal": np.array([[0, 0, 3.0, 0], [0.8, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 0, 1.0]]),
}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("rules")
    rng = np.random.default_rng(0)
    for number, (plane, affine) in enumerate(AFFINES.items(), start=1):
        vol = Volume(rng.integers(0, 500, size=(10, 8, 4)).astype(np.int16), affine)
        write_series(vol, root / plane, modality="MR", series_description=f"t2 {plane}", series_number=number,
                     extra={"SliceThickness": "3.0"})  # fmt: skip
    return {s.description.split()[-1]: s for s in scan(root).series}


@pytest.mark.parametrize("plane", sorted(AFFINES))
def test_plane_rule_keeps_only_the_series_acquired_in_that_plane(scanned, plane):
    assert acquisition_plane(scanned[plane]) == plane
    rules = SeriesRules(plane=plane)
    kept = {name for name, series in scanned.items() if rules.why_not(series) is None}
    assert kept == {plane}
    other = next(n for n in scanned if n != plane)
    assert rules.why_not(scanned[other]) == f"{other} plane, not {plane}"


def test_thickness_description_and_modality_rules(scanned):
    assert SeriesRules(thickness_mm=parse_range("2-4")).why_not(scanned["axial"]) is None
    assert "outside 0.5-1.5 mm" in str(SeriesRules(thickness_mm=parse_range("0.5-1.5")).why_not(scanned["axial"]))
    assert SeriesRules(description="T2 COR").why_not(scanned["coronal"]) is None  # a case-insensitive regex
    assert SeriesRules(modalities=frozenset({"CT"})).why_not(scanned["axial"]) == "modality or description"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"plane": "oblique"}, "not one of axial"), ({"description": "(unclosed"}, "is not a regex")],
)
def test_bad_rules_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SeriesRules(**kwargs)
    with pytest.raises(ConfigError, match="MIN-MAX"):
        parse_range("thin")
