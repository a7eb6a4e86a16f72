"""Slice ordering and grid checks on hand-made geometries (no files)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.io.dicom.geometry import analyse_stack

AXIAL = (1, 0, 0, 0, 1, 0)


def _stack(zs, xy=None):
    xy = np.zeros((len(zs), 2)) if xy is None else np.asarray(xy, dtype=float)
    return np.column_stack([xy, zs])


@pytest.mark.parametrize(
    ("zs", "codes", "step"),
    [
        ([0, 2.5, 5, 7.5], [], 2.5),
        ([7.5, 0, 5, 2.5], [], 2.5),  # file order scrambled: sorted by position
        ([0, 1.25, 2.5, 204.0], ["uneven_gaps"], 1.25),
        ([-99.48, 103.02, 104.27, 105.52], ["missing_slices"], 1.25),  # pydicom CT2: 202.5 = 162 x 1.25
        ([0, 2, 4, 8, 10], ["missing_slices"], 2.0),
        ([0, 2, 2, 4], ["duplicate_positions"], 2.0),
        ([0, 2.01, 4.0, 6.0], [], 2.0),  # within tolerance (float noise in headers)
        ([3.0], [], 5.0),  # single slice: slice thickness
    ],
)
def test_gap_rules(zs, codes, step):
    g = analyse_stack(AXIAL, _stack(zs), (0.5, 0.5), slice_thickness=5.0)
    assert [p.code for p in g.problems] == codes
    assert g.slice_step == pytest.approx(step, abs=0.02)
    assert list(g.positions) == sorted(zs)


def test_uneven_gaps_are_listed_not_averaged():
    g = analyse_stack(AXIAL, _stack([0, 1, 2, 10]), (1, 1))
    (problem,) = g.problems
    assert problem.blocking
    assert "[1, 1, 8]" in problem.detail


def test_order_follows_the_normal_not_z():
    # sagittal slices: normal along x; z is constant, so any z-based sort would be wrong
    iop = (0, 1, 0, 0, 0, -1)
    pos = np.array([[x, -100, 50] for x in (4.0, -2.0, 1.0)])
    g = analyse_stack(iop, pos, (1, 1))
    normal = np.cross(iop[:3], iop[3:])
    assert np.all(np.diff(pos[g.order] @ normal) > 0)
    assert g.slice_step == pytest.approx(3.0)


def test_gantry_tilt_detected_with_angle():
    angle = 15.0
    zs = np.arange(6) * 2.0
    ys = zs * np.tan(np.radians(angle))
    g = analyse_stack(AXIAL, _stack(zs, np.column_stack([np.zeros(6), ys])), (1, 1))
    (problem,) = g.problems
    assert problem.code == "gantry_tilt"
    assert not problem.blocking
    assert g.tilt_deg == pytest.approx(angle, abs=0.01)
    np.testing.assert_allclose(g.in_plane_offsets[:, 1], ys, atol=1e-9)
    assert g.slice_step == pytest.approx(2.0)


def test_affine_maps_voxels_onto_slice_positions():
    iop = (0.6, 0.8, 0, -0.8, 0.6, 0)
    pos = np.array([[10, 20, z] for z in (30.0, 33.0, 36.0)])
    g = analyse_stack(iop, pos[::-1], (0.5, 0.25))
    a = g.affine_lps()
    for k in range(3):
        np.testing.assert_allclose((a @ [0, 0, k, 1])[:3], pos[k])
    np.testing.assert_allclose(a[:3, 0], np.array(iop[:3]) * 0.25)  # i runs along the row: column spacing
    np.testing.assert_allclose(a[:3, 1], np.array(iop[3:]) * 0.5)
