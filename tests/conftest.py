"""Shared fixtures: small synthetic volumes and DICOM series written with pydicom, and the GPU skip rule."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests_support import dcm2niix_executable

from medimg.io import Volume


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture
def phantom() -> Callable[..., Volume]:
    """Make an int16 volume with distinct values (random texture + a bright ball) and a given affine."""

    def make(shape=(20, 24, 9), affine=None, seed=0) -> Volume:
        rng = np.random.default_rng(seed)
        arr = rng.integers(-1000, 1500, size=shape).astype(np.int16)
        ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        ball = (ii - shape[0] / 2) ** 2 + (jj - shape[1] / 2) ** 2 + (kk - shape[2] / 2) ** 2 < (min(shape) / 3) ** 2
        arr[ball] = 2000
        return Volume(arr, np.eye(4) if affine is None else affine)

    return make


@pytest.fixture
def dcm2niix(tmp_path: Path) -> Callable[[Path], list[Path]]:
    """Run the reference converter on a folder; return the NIfTI files it wrote (sorted)."""

    def run(folder: Path) -> list[Path]:
        out = tmp_path / f"dcm2niix_{folder.name}"
        out.mkdir()
        proc = subprocess.run(
            [dcm2niix_executable(), "-z", "n", "-b", "n", "-f", "%s_%z", "-o", str(out), str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
        return sorted(out.glob("*.nii"))

    return run
