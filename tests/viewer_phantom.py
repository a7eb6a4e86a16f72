"""A small CT-like phantom for the viewer tests: a body (40 HU) in air (-1000 HU) with a bright blob (600 HU) on
the patient's LEFT, the model's mask on the blob and a heatmap around it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medimg.io.volume import Volume

SHAPE = (48, 40, 32)
SPACING = (2.0, 2.0, 3.0)
BLOB_X = 10  # RAS x index: x grows towards the patient's right, so a low x is on the patient's left


def viewer_phantom() -> tuple[Volume, Volume, Volume]:
    """(image, mask, heatmap) on one RAS grid of :data:`SHAPE` voxels."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    image = np.full(SHAPE, -1000, np.int16)
    image[((x - SHAPE[0] / 2) / (SHAPE[0] * 0.42)) ** 2 + ((y - SHAPE[1] / 2) / (SHAPE[1] * 0.4)) ** 2 <= 1] = 40
    r2 = (x - BLOB_X) ** 2 + (y - SHAPE[1] // 2) ** 2 + (z - SHAPE[2] // 2) ** 2
    image[r2 <= 16] = 600
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-40.0, -30.0, 10.0)
    return (
        Volume(image, affine, {"modality": "CT"}),
        Volume((r2 <= 16).astype(np.uint8), affine),
        Volume(np.exp(-r2 / 60.0).astype(np.float32), affine),
    )


def write_viewer_phantom(folder: Path) -> dict[str, Path]:
    """The phantom as NIfTI files in ``folder``: ``{"image": ..., "mask": ..., "heatmap": ...}``."""
    paths = {}
    for name, vol in zip(("image", "mask", "heatmap"), viewer_phantom(), strict=True):
        paths[name] = vol.save(folder / f"{name}.nii.gz")
    return paths
