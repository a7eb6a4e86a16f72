"""Every volume dcm2niix makes from the real scanner files in ``../shared/realdicom/`` is reproduced by
``medimg convert``, or refused in one line that names the rule.

The sample (its README says what each folder holds) holds GE, Philips, Siemens and Toshiba/Canon series that the
scanners wrote: classic single-frame multi-volume EPI and DWI, Philips private scaling, a derived ADC volume, one
mosaic in nine transfer syntaxes. dcm2niix runs as the sample's README says (``-z n -f "%s_%p_%e"``: it writes
Philips' floating-point values by default); medimg runs with its defaults. Both are compared in world space: same
canonical shape, affine within 1e-2 mm, same voxel values (to float32 precision), and the same ``.bval``/``.bvec``.
Where the folder is absent (a clone outside this workplace) the tests skip with that reason.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests_support import ROOT, assert_same_diffusion, dcm2niix_reference

from medimg.io.dicom.convert import convert

REALDICOM = ROOT.parent / "shared" / "realdicom"
FOLDERS = sorted(
    str(p.relative_to(REALDICOM))
    for p in REALDICOM.glob("*/In/**")
    if p.is_dir() and any(f.is_file() and not f.name.startswith(("LICENSE", "README")) for f in p.iterdir())
)

pytestmark = pytest.mark.skipif(not REALDICOM.is_dir(), reason=f"{REALDICOM} is absent (real scanner sample)")


def _canonical(path: Path) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(path))
    return img.shape, img.affine, np.asarray(img.get_fdata(dtype=np.float64))


def _same(
    ref: tuple[tuple[int, ...], np.ndarray, np.ndarray], ours: tuple[tuple[int, ...], np.ndarray, np.ndarray]
) -> bool:
    if ref[0] != ours[0] or not np.allclose(ref[1], ours[1], atol=1e-2):
        return False
    scale = max(1.0, float(np.abs(ref[2]).max()))
    return bool(np.allclose(ours[2], ref[2], rtol=1e-4, atol=1e-5 * scale))


def _derived_volumes(
    adc: tuple[tuple[int, ...], np.ndarray, np.ndarray], refs: list[Path]
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """dcm2niix's ``_ADC`` file holds the whole diffusion series *with* the derived (isotropic/trace/ADC) volumes;
    medimg's ``_ADC`` holds the derived volumes alone (the 4D holds the rest): compare with the volumes that
    dcm2niix's main 4D output does not have, which are the last ones."""
    main = [_canonical(p) for p in refs if not p.stem.endswith("_ADC") and len(_canonical(p)[0]) == 4]
    n_main = main[0][0][3] if main else 0
    data = adc[2][..., n_main:]
    if data.shape[-1] == 1:
        data = data[..., 0]
    return data.shape, adc[1], data


@pytest.mark.skipif(not FOLDERS, reason="no scanner folders under the real sample")
@pytest.mark.parametrize("folder", FOLDERS)
def test_every_dcm2niix_volume_is_reproduced_or_refused_by_rule(folder, tmp_path):
    source = REALDICOM / folder
    refs = dcm2niix_reference(source, tmp_path / "ref")
    assert refs, f"dcm2niix made nothing from {folder}"
    report = convert(source, tmp_path / "ours")
    ours = {p: _canonical(p) for p in report.written}
    for ref_path in refs:
        ref = _canonical(ref_path)
        if ref_path.stem.endswith("_ADC"):
            ref = _derived_volumes(ref, refs)
        matches = [p for p, img in ours.items() if _same(ref, img)]
        if not matches:
            # the only acceptable miss is a refusal: one line that names the rule, never a different volume
            assert report.refused, f"{ref_path.name}: no identical medimg volume and nothing refused ({folder})"
            assert all("\n" not in why and ":" in why for why in report.refused.values())
            continue
        bval = ref_path.with_suffix(".bval")
        ours_path = matches[0]
        ours_bval = Path(str(ours_path).removesuffix(".nii.gz") + ".bval")
        assert bval.exists() == ours_bval.exists(), f"{ref_path.name}: .bval written by one side only"
        if bval.exists():
            assert_same_diffusion(ours_path, ref_path)
    assert not report.refused, f"{folder}: refused {report.refused}"
    assert len(report.written) == len(refs), f"{folder}: {len(report.written)} outputs, dcm2niix {len(refs)}"


def test_philips_display_scaling_keeps_rescale_values_and_says_so(tmp_path):
    folder = REALDICOM / "dcm_qa_philips" / "In" / "Magdeburg_2014" / "fmri"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    precise = convert(folder, tmp_path / "precise")
    display = convert(folder, tmp_path / "display", philips_scaling="display")
    (p,), (d,) = precise.written, display.written
    fp, dv = nib.load(p).get_fdata(), nib.load(d).get_fdata()
    mask = dv > 0
    ratio = dv[mask] / fp[mask]
    # DV / FP = RS x SS, one constant for the series (RS 1.29035, SS 0.00428404 in this scanner's files)
    np.testing.assert_allclose(ratio, 1.29035409035409 * 0.004284040071070194, rtol=1e-4)
    sidecar_p = Path(str(p).removesuffix(".nii.gz") + ".json").read_text()
    sidecar_d = Path(str(d).removesuffix(".nii.gz") + ".json").read_text()
    assert "floating-point" in sidecar_p and "display value" in sidecar_d
