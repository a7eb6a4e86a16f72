"""Plain helpers shared by the tests (fixtures stay in conftest.py): the small CPU training run's arguments,
synthetic geometry, the dcm2niix reference converter, and the image comparison against a reference NIfTI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pytest

if TYPE_CHECKING:
    import nibabel as nib

    from medimg.explain.api import Explanation
    from medimg.io import Volume

ROOT = Path(__file__).resolve().parents[1]

SMALL_FIT = [
    "--config", str(ROOT / "configs" / "seg_unet3d.yaml"),
    "--trainer.accelerator", "cpu",
    "--trainer.check_val_every_n_epoch", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--data.patch_size", "[32, 32, 32]",
    "--data.num_workers", "0",
    "--data.epoch_length", "24",
    "--model.roi_size", "[32, 32, 32]",
    "--model.net_kwargs", "{channels: [8, 16, 32], strides: [2, 2], num_res_units: 1}",
    "--model.lr", "0.01",
]  # fmt: skip


def oblique_affine(angles_deg: tuple[float, float, float], spacing: tuple[float, float, float], origin: npt.ArrayLike):
    """A RAS affine with the given rotation (xyz Euler angles), voxel size and origin."""
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def dcm2niix_executable() -> str:
    """The reference converter (PyPI ``dcm2niix``, in requirements-dev.txt): next to this Python, else on PATH."""
    exe = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix")
    if exe is None:
        pytest.fail("dcm2niix (PyPI package 'dcm2niix', in requirements-dev.txt) is not installed")
    return exe


def dcm2niix_reference(folder: Path, out: Path) -> list[Path]:
    """The reference converter's NIfTI files of ``folder`` (uncompressed, named ``%s_%p_%e`` as the real scanner
    sample's README asks), written into a new ``out``."""
    import subprocess

    out.mkdir(parents=True)
    proc = subprocess.run(
        [dcm2niix_executable(), "-z", "n", "-f", "%s_%p_%e", "-o", str(out), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    return sorted(out.glob("*.nii"))


def assert_same_image(volume: Volume, reference: nib.Nifti1Image) -> None:
    """Both brought to the closest canonical (RAS) orientation: same shape, affines within 1e-3 mm, same voxels."""
    import nibabel as nib

    ours = nib.as_closest_canonical(volume.to_nifti())
    ref = nib.as_closest_canonical(reference)
    assert ours.shape[:3] == ref.shape[:3]
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(ours.dataobj, dtype=np.float64), ref.get_fdata())


def synthetic_explanation(seed: int, checkpoint_sha256: str = "a" * 64) -> Explanation:
    """A small CT-like explanation (24 x 20 x 16 voxels) whose heatmap and mask are one box shifted by ``seed``:
    the reading-session tests need many distinct cases without training a model."""
    from medimg.explain.api import Explanation
    from medimg.explain.sanity import SanityResult
    from medimg.io import Volume

    rng = np.random.default_rng(seed)
    img = Volume(rng.normal(40, 20, (24, 20, 16)).astype(np.float32), np.eye(4), {"modality": "CT"})
    heat = np.zeros((24, 20, 16), np.float32)
    heat[4 + seed : 12 + seed, 6:12, 4:12] = 1.0
    return Explanation(
        image=img, heatmap=Volume(heat, np.eye(4)), prediction=Volume((heat > 0).astype(np.uint8), np.eye(4)),
        label=1, method="hirescam", layer="model.2", checkpoint_sha256=checkpoint_sha256,
        input_sha256=f"{seed:x}" * 64, sanity=SanityResult(0.1, 0.5, 7),
    )  # fmt: skip


def bvec_to_ras(bvec: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Undo FSL's convention: voxel-frame .bvec columns -> RAS unit directions."""
    a = affine[:3, :3]
    rotation = a / np.linalg.norm(a, axis=0)
    v = np.array(bvec, dtype=float)
    if np.linalg.det(a) > 0:
        v[0] *= -1
    return rotation @ v


def assert_same_diffusion(ours: Path, ref: Path) -> None:
    """medimg's ``.bval``/``.bvec`` beside ``ours`` equal dcm2niix's beside ``ref``: the same b-values, the same
    directions in world space (and the same numbers where both images share an affine)."""
    import nibabel as nib

    ours_img, ref_img = nib.load(ours), nib.load(ref)
    base_o, base_r = str(ours).removesuffix(".nii.gz"), str(ref).removesuffix(".nii")
    assert Path(base_o + ".bval").read_text().split() == Path(base_r + ".bval").read_text().split()
    bo, br = np.loadtxt(base_o + ".bvec", ndmin=2), np.loadtxt(base_r + ".bvec", ndmin=2)
    assert bo.shape == br.shape
    np.testing.assert_allclose(bvec_to_ras(bo, ours_img.affine), bvec_to_ras(br, ref_img.affine), atol=2e-5)
    if np.allclose(ours_img.affine, ref_img.affine, atol=1e-3):
        np.testing.assert_allclose(bo, br, atol=2e-6)
