"""Each vendor rule of issue 25 on series the tests write, so the rules hold without the real scanner sample:
GE private diffusion and slices-per-volume, Philips scaling both ways and private diffusion with its derived
isotropic volume, Canon b=0 volumes without tags, a UID-less CT, partial-Fourier and padded mosaics, magnitude and
phase in one series, readable unique names, one-line refusals. Where dcm2niix reads the same files, its output is
the reference (world space, values, ``.bval``/``.bvec``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from mosaic_writer import write_mosaics
from tests_support import assert_same_diffusion, assert_same_image, dcm2niix_reference

from medimg.errors import SeriesGeometryError, SeriesSelectionError
from medimg.io import Volume, load, scan
from medimg.io.dicom.convert import convert
from medimg.io.dicom.write import write_series

GE = "GE MEDICAL SYSTEMS"
PHILIPS = "Philips Medical Systems"


def _edit(paths: Sequence[Path], fn: Callable[[pydicom.Dataset, int], None]) -> None:
    """Rewrite each file after ``fn(dataset, index)`` changed it (private tags, instance numbers)."""
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        fn(ds, n)
        ds.save_as(path, enforce_file_format=True)


def _private(ds: pydicom.Dataset, group: int, creator: str, elements: dict[int, tuple[str, Any]]) -> None:
    block = ds.private_block(group, creator, create=True)
    for offset, (vr, value) in elements.items():
        block.add_new(offset, vr, value)


def _write_volumes(
    phantom: Callable[..., Volume],
    folder: Path,
    n_volumes: int,
    *,
    manufacturer: str,
    per_volume: Callable[[pydicom.Dataset, int], None] | None = None,
    shape: tuple[int, int, int] = (12, 10, 5),
    series_uid: str = "1.2.826.0.1.3680043.8.498.77",
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """``n_volumes`` volumes at the same slice positions in one series (one file per slice), Instance Numbers in
    acquisition order (volume-major), files named at random; ``per_volume(ds, t)`` adds what tells them apart."""
    written: list[Path] = []
    base = phantom(shape=shape, affine=np.diag([0.9, 0.9, 4.0, 1.0]))
    for t in range(n_volumes):
        arr = np.clip(base.array.astype(np.int32) + 100 * t + 1000, 0, 32000).astype(np.int16)
        paths = write_series(
            Volume(arr, base.affine),
            folder / f"v{t}",
            series_uid=series_uid,
            series_number=5,
            series_description="ep2d",
            shuffle_names=True,
            seed=t,
            extra={"Manufacturer": manufacturer, **(extra or {})},
        )

        def edit(ds: pydicom.Dataset, _: int, t: int = t) -> None:
            k = int(ds.InstanceNumber) - 1
            ds.InstanceNumber = t * shape[2] + k + 1
            ds.AcquisitionNumber = 1
            ds.AcquisitionTime = "120000"
            if per_volume is not None:
                per_volume(ds, t)

        _edit(paths, edit)
        written += paths
    return written


GE_B = [0, 1000, 1000, 1000, 1_000_001_000]
GE_G = [(0, 0, 0), (1, 0, 0), (0, 0.6, 0.8), (0.6, 0, 0.8), (0.6, 0.8, 0)]


def _ge_dwi(ds: pydicom.Dataset, t: int) -> None:
    _private(ds, 0x0043, "GEMS_PARM_01", {0x39: ("IS", [GE_B[t], 8, 0, 0])})
    gx, gy, gz = GE_G[t]
    _private(ds, 0x0019, "GEMS_ACQU_01", {0xBB: ("DS", f"{gx:g}"), 0xBC: ("DS", f"{gy:g}"), 0xBD: ("DS", f"{gz:g}")})
    _private(ds, 0x0021, "GEMS_RELA_01", {0x4F: ("SS", 5)})
    ds.InPlanePhaseEncodingDirection = "COL"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]


def test_ge_private_diffusion_gives_dcm2niix_bvals_and_bvecs(phantom, tmp_path):
    _write_volumes(phantom, tmp_path / "dwi", len(GE_B), manufacturer=GE, per_volume=_ge_dwi)
    report = convert(tmp_path / "dwi", tmp_path / "ours")
    (ours,) = report.written
    assert nib.load(ours).shape == (12, 10, 5, 5)
    # the 10^9 offset some GE software adds to (0043,1039) is removed
    assert Path(str(ours).removesuffix(".nii.gz") + ".bval").read_text().split() == ["0"] + ["1000"] * 4
    (ref,) = dcm2niix_reference(tmp_path / "dwi", tmp_path / "ref")
    assert_same_image(load(tmp_path / "dwi"), nib.load(ref))
    assert_same_diffusion(ours, ref)


def test_ge_volumes_without_attributes_follow_instance_order_in_chunks_of_locations(phantom, tmp_path):
    def locations(ds: pydicom.Dataset, t: int) -> None:
        _private(ds, 0x0021, "GEMS_RELA_01", {0x4F: ("SS", 5)})

    _write_volumes(phantom, tmp_path / "fmri", 4, manufacturer=GE, per_volume=locations)
    volume = load(tmp_path / "fmri")
    assert volume.shape == (12, 10, 5, 4)
    # volume t was written with 100 * t added: the time order is Instance Number order
    assert [int(volume.array[0, 0, 0, t]) - int(volume.array[0, 0, 0, 0]) for t in range(4)] == [0, 100, 200, 300]
    assert any(p["code"] == "volumes_by_instance" for p in volume.meta["problems"])
    (ref,) = dcm2niix_reference(tmp_path / "fmri", tmp_path / "ref")
    assert_same_image(volume, nib.load(ref))


def test_volumes_nothing_tells_apart_are_refused_in_one_line(phantom, tmp_path):
    _write_volumes(phantom, tmp_path / "fmri", 3, manufacturer="ACME")
    with pytest.raises(SeriesGeometryError, match="duplicate_positions") as info:
        load(tmp_path / "fmri")
    assert "\n" not in str(info.value)


RS, RI, SS = 1.29035409035409, 0.0, 0.004284040071070194


def test_philips_values_are_floating_point_by_default_and_display_on_request(phantom, tmp_path):
    base = phantom(shape=(12, 10, 5), affine=np.diag([0.9, 0.9, 4.0, 1.0]))
    arr = np.clip(base.array.astype(np.float64) + 1000, 0, 30000) * RS
    paths = write_series(Volume(arr, base.affine), tmp_path / "mr", rescale=(RS, RI), extra={"Manufacturer": PHILIPS})
    _edit(paths, lambda ds, _: _private(ds, 0x2005, "Philips MR Imaging DD 001", {0x0E: ("FL", SS)}))
    precise, display = load(tmp_path / "mr"), load(tmp_path / "mr", philips_scaling="display")
    np.testing.assert_allclose(display.array, np.rint(arr / RS) * RS, rtol=1e-5)  # DS slope: 16 characters
    np.testing.assert_allclose(precise.array, display.array / (RS * SS), rtol=1e-5)
    assert "floating-point" in precise.meta["value_scaling"] and "display" in display.meta["value_scaling"]
    (ref,) = dcm2niix_reference(tmp_path / "mr", tmp_path / "ref")  # dcm2niix's default is the floating-point value
    np.testing.assert_allclose(
        nib.as_closest_canonical(precise.to_nifti()).get_fdata(),
        nib.as_closest_canonical(nib.load(ref)).get_fdata(),
        rtol=1e-4,
    )


PH_B = [0.0, 1000.0, 1000.0, 1000.0, 1000.0]
PH_G = [(0, 0, 0), (1, 0, 0), (0, 0.6, 0.8), (0, 0, 1), (0, 0, 0)]  # the last: the isotropic (trace) image


def _philips_dwi(ds: pydicom.Dataset, t: int) -> None:
    _private(ds, 0x2001, "Philips Imaging DD 001", {0x03: ("FL", PH_B[t]), 0x04: ("CS", "I" if t == 4 else "O")})
    gx, gy, gz = PH_G[t]
    _private(ds, 0x2005, "Philips MR Imaging DD 001", {0xB0: ("FL", gx), 0xB1: ("FL", gy), 0xB2: ("FL", gz)})
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"]


def test_philips_private_diffusion_with_the_isotropic_image_written_apart(phantom, tmp_path):
    _write_volumes(phantom, tmp_path / "dwi", len(PH_B), manufacturer=PHILIPS, per_volume=_philips_dwi)
    report = convert(tmp_path / "dwi", tmp_path / "ours")
    names = sorted(p.name for p in report.written)
    assert names == ["005_MR_ep2d.nii.gz", "005_MR_ep2d_ADC.nii.gz"]
    main = tmp_path / "ours" / "005_MR_ep2d.nii.gz"
    adc = nib.load(tmp_path / "ours" / "005_MR_ep2d_ADC.nii.gz")
    assert nib.load(main).shape == (12, 10, 5, 4) and adc.shape == (12, 10, 5)
    assert (tmp_path / "ours" / "005_MR_ep2d.bval").read_text().split() == ["0", "1000", "1000", "1000"]
    refs = dcm2niix_reference(tmp_path / "dwi", tmp_path / "ref")
    (ref_main,) = [p for p in refs if not p.stem.endswith("_ADC")]
    assert_same_diffusion(main, ref_main)


def test_canon_b0_volumes_without_tags_are_b0_and_recorded(phantom, tmp_path):
    def canon(ds: pydicom.Dataset, t: int) -> None:
        if t > 0:  # Canon/Toshiba write (0018,9087)/(0018,9089) only where a gradient is applied
            ds.add_new(0x00189087, "FD", 1500.0)
            ds.add_new(0x00189089, "FD", list(PH_G[t]))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "GDC"]

    _write_volumes(phantom, tmp_path / "dwi", 4, manufacturer="TOSHIBA", per_volume=canon)
    report = convert(tmp_path / "dwi", tmp_path / "ours")
    (ours,) = report.written
    assert Path(str(ours).removesuffix(".nii.gz") + ".bval").read_text().split() == ["0", "1500", "1500", "1500"]
    assert any("assumed_b0" in n for n in next(iter(report.notes.values())))
    (ref,) = dcm2niix_reference(tmp_path / "dwi", tmp_path / "ref")
    assert_same_diffusion(ours, ref)


def test_a_ct_whose_series_uid_was_blanked_is_one_volume(phantom, tmp_path):
    ct = phantom(shape=(16, 14, 20), affine=np.diag([0.7, 0.7, 3.0, 1.0]))
    paths = write_series(ct, tmp_path / "ct", modality="CT", series_description="CT Body 3.0", shuffle_names=True)
    _edit(paths, lambda ds, _: setattr(ds, "SeriesInstanceUID", ""))
    found = scan(tmp_path / "ct")
    (series,) = found.series
    assert series.shape == (16, 14, 20) and any(p.code == "no_series_uid" for p in series.problems)
    volume = load(tmp_path / "ct")
    np.testing.assert_array_equal(volume.array, ct.array)
    report = convert(tmp_path / "ct", tmp_path / "out")
    assert [p.name for p in report.written] == ["001_CT_CT_Body_3_0.nii.gz"]
    (plain,) = convert(tmp_path / "ct", tmp_path / "plain", compress=False).written  # dcm2niix's -z n
    assert plain.name == "001_CT_CT_Body_3_0.nii" and np.array_equal(load(plain).array, ct.array)
    (ref,) = dcm2niix_reference(tmp_path / "ct", tmp_path / "ref")
    assert_same_image(volume, nib.load(ref))


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"matrix_text": "12*24"}, "partial Fourier: fewer phase lines acquired than the tile has"),
        ({"pad": 2}, "a mosaic with padding pixels beyond its tile grid (fewer than the grid's side)"),
    ],
)
def test_partial_fourier_and_padded_mosaics_load_likedcm2niix_reference(kwargs, what, phantom, tmp_path):
    truth = phantom(shape=(20, 24, 7), affine=np.diag([-2.0, -2.0, 3.0, 1.0]))
    (path,) = write_mosaics(truth, tmp_path / "m", **kwargs)
    volume = load(path)
    np.testing.assert_array_equal(volume.array, truth.array, err_msg=what)
    np.testing.assert_allclose(volume.affine, truth.affine, atol=1e-3)
    if not kwargs.get("pad"):  # dcm2niix unpacks a padded mosaic of this writer differently: compared to the truth only
        (ref,) = dcm2niix_reference(tmp_path / "m", tmp_path / "ref")
        assert_same_image(volume, nib.load(ref))


def test_magnitude_and_phase_in_one_series_become_two_outputs(phantom, tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.91"
    base = phantom(shape=(12, 10, 5), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    for part, offset in (("M", 0), ("P", 500)):
        arr = (base.array.astype(np.int32) + offset).astype(np.int16)
        write_series(
            Volume(arr, base.affine),
            tmp_path / "fmap" / part,
            series_uid=uid,
            series_number=9,
            series_description="field map",
            seed=offset,
            extra={"ImageType": ["ORIGINAL", "PRIMARY", part, "ND"]},
        )
    report = convert(tmp_path / "fmap", tmp_path / "out")
    assert sorted(p.name for p in report.written) == ["009_MR_field_map.nii.gz", "009_MR_field_map_ph.nii.gz"]
    phase = nib.load(tmp_path / "out" / "009_MR_field_map_ph.nii.gz").get_fdata()
    mag = nib.load(tmp_path / "out" / "009_MR_field_map.nii.gz").get_fdata()
    np.testing.assert_array_equal(phase - mag, 500)
    refs = dcm2niix_reference(tmp_path / "fmap", tmp_path / "ref")
    assert len(refs) == 2 and any(p.stem.endswith("_ph") for p in refs)


def test_names_are_unique_without_suffix_chains_and_listings_are_short(phantom, tmp_path):
    for n in range(6):  # six series with the same number and description
        write_series(phantom(shape=(8, 8, 3), seed=n), tmp_path / "s" / str(n), series_number=3, seed=n)
    report = convert(tmp_path / "s", tmp_path / "out")
    names = sorted(p.name for p in report.written)
    assert names == ["003_MR_medimg_phantom.nii.gz"] + [f"003_MR_medimg_phantom_{k}.nii.gz" for k in range(2, 7)]
    with pytest.raises(SeriesSelectionError) as info:
        load(tmp_path / "s")
    message = str(info.value)
    assert "6 series found" in message and "and 2 more" in message and "\n" not in message


CANON_G = [None, (0.445, 0.0, 0.895), (0.0, 0.6, 0.8), (0.6, 0.8, 0.0)]


def test_canon_image_comments_diffusion_gives_dcm2niix_bvals_and_bvecs(phantom, tmp_path):
    def canon(ds: pydicom.Dataset, t: int) -> None:
        g = CANON_G[t]
        ds.ImageComments = "b=0" if g is None else f"b=1000({g[0]:.3f},{g[1]:.3f},{g[2]:.3f})"
        if g is not None:  # Canon keeps the b-value in (0018,9087), the direction only in the comments
            ds.add_new(0x00189087, "FD", 1000.0)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]

    _write_volumes(phantom, tmp_path / "dwi", len(CANON_G), manufacturer="Canon Medical Systems", per_volume=canon)
    report = convert(tmp_path / "dwi", tmp_path / "ours")
    (ours,) = report.written
    assert Path(str(ours).removesuffix(".nii.gz") + ".bval").read_text().split() == ["0", "1000", "1000", "1000"]
    (ref,) = dcm2niix_reference(tmp_path / "dwi", tmp_path / "ref")
    assert_same_diffusion(ours, ref)
