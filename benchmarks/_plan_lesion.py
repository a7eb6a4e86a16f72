"""Issue 32's task for ``plan_bench.py``: an MR-like organ with a small lesion inside it, and its table rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medimg.data.phantoms import PHANTOM_INTENSITIES, phantom_case
from medimg.io.volume import Volume

#: issue 32's task: (organ_lesion_msd kwargs, the plain loop's hand-sized patch, UNet channels, patches per case and
#: batch, foreground : background crop ratio)
LESION_TASK = "Organ-Lesion-MR"
LESION_KW = {"n_cases": 12, "n_test": 8, "shape": (128, 128, 24), "spacing": (0.9, 0.9, 4.0), "seed": 32}
LESION_PLAIN = {"patch": (96, 96, 16), "channels": (16, 32, 64, 128), "num_samples": 1, "batch": 2, "pos": 2.0}
#: the lesion holds about this share of the organ's voxels (at most 1 % of the foreground, checked per case)
LESION_SHARE = 0.005
#: the lesion's MR intensity (the organ is 520, the body 300, noise sd 30: medimg.data.phantoms)
LESION_VALUE = 680.0


def _lesion_in(organ: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ellipsoid of ~LESION_SHARE of ``organ``'s voxels well inside it, at most 1 % of organ + lesion."""
    coords = np.argwhere(organ)
    half = (coords.max(0) - coords.min(0) + 1) / 2
    centre = coords.mean(0) + rng.uniform(-0.35, 0.35, 3) * half
    radii = np.maximum(half * LESION_SHARE ** (1 / 3), [1.5, 1.5, 1.0])
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in organ.shape], indexing="ij")
    while True:
        lesion = (sum(((g - centre[i]) / radii[i]) ** 2 for i, g in enumerate(grid)) <= 1.0) & organ
        if 0 < lesion.sum() <= 0.01 * organ.sum():
            return lesion
        radii = radii * (0.9 if lesion.sum() else 1.2)


def organ_lesion_msd(root: Path, n_cases: int, n_test: int, shape: tuple[int, int, int],
                     spacing: tuple[float, float, float], seed: int) -> Path:  # fmt: skip
    """Issue 32's task in the MSD layout: :func:`medimg.data.phantoms.phantom_case` MR cases (+-5 % shape jitter)
    with a lesion (label 2, :data:`LESION_VALUE`) inside the organ (label 1)."""
    rng = np.random.default_rng(seed)
    noise = PHANTOM_INTENSITIES["MR"][3]
    entries: dict[str, list] = {"training": [], "test": []}
    for i in range(n_cases + n_test):
        case_shape = tuple(max(round(s * f), 8) for s, f in zip(shape, rng.uniform(0.95, 1.05, 3), strict=True))
        img, lab = phantom_case(rng, case_shape, spacing, modality="MR")  # type: ignore[arg-type]
        image, label = np.asarray(img.array, np.float32).copy(), np.asarray(lab.array).copy()
        lesion = _lesion_in(label > 0, rng)
        image[lesion] = LESION_VALUE + rng.normal(0, noise, int(lesion.sum()))
        label[lesion] = 2
        split, folder = ("training", "Tr") if i < n_cases else ("test", "Ts")
        for kind, vol in (("images", Volume(image, img.affine, img.meta)), ("labels", Volume(label, lab.affine))):
            (root / f"{kind}{folder}").mkdir(parents=True, exist_ok=True)
            vol.save(root / f"{kind}{folder}" / f"Lesion_{i:03d}.nii.gz")
        name = f"./imagesTr/Lesion_{i:03d}.nii.gz"
        entries[split].append({"image": name, "label": name.replace("images", "labels")} if split == "training"
                              else f"./imagesTs/Lesion_{i:03d}.nii.gz")  # fmt: skip
    spec = {"name": LESION_TASK, "tensorImageSize": "3D", "modality": {"0": "MR"},
            "labels": {"0": "background", "1": "organ", "2": "lesion"}, "numTraining": n_cases, "numTest": n_test,
            **entries}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(spec, indent=2))
    return root


def _mean_sd(values: list[float]) -> str:
    v = np.array(values)
    return f"{v.mean():.3f}" + (f" +- {v.std(ddof=1):.3f}" if len(v) > 1 else "")


def lesion_row(pipeline: str, plan_s: str, runs: list[tuple[float, dict[int, float], int]]) -> str:
    """A row of the third task: wall, steps, mean-of-classes / organ / lesion Dice (mean +- sd), each run's mean."""
    means = [(d[1] + d[2]) / 2 for _, d, _ in runs]
    return (
        f"| {pipeline} | {plan_s} | {np.mean([w for w, _, _ in runs]):.0f} | {np.mean([n for _, _, n in runs]):.0f} "
        f"| {_mean_sd(means)} | {_mean_sd([d[1] for _, d, _ in runs])} | {_mean_sd([d[2] for _, d, _ in runs])} "
        f"| {', '.join(f'{m:.3f}' for m in means)} |"
    )


def lesion_fraction(label: Path) -> float:
    from medimg.io import load

    lab = np.asarray(load(label).array)
    return float((lab == 2).sum() / max((lab > 0).sum(), 1))
