"""Where training patches are centred (issue 32): nnU-Net's class-balanced foreground sampling against MONAI's
any-foreground-voxel rule, its per-case ratios, and the data module's switch between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.data.phantoms import make_phantom_msd
from medimg.errors import ConfigError
from medimg.transforms.pipelines import patch_sampler
from medimg.transforms.sampling import class_ratios


def _organ_and_lesion(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (1, 48, 48, 12) label: an organ of 3920 voxels (1), a lesion of 27 voxels inside it (2, 0.7 %). The organ
    keeps away from the borders, where MONAI shifts a crop centre inwards (by up to half the 8 x 8 x 4 patch)."""
    label = np.zeros((1, 48, 48, 12), np.float32)
    label[0, 10:38, 10:38, 4:9] = 1
    x, y = rng.integers(12, 33, 2)
    label[0, x : x + 3, y : y + 3, 5:8] = 2
    return np.asarray(rng.normal(1.0, 0.1, label.shape), np.float32), label


@pytest.mark.parametrize(("sampling", "lesion_share"), [("classes", (0.4, 0.6)), ("any", (0.0, 0.02))])
def test_class_balanced_sampling_centres_half_the_foreground_patches_on_the_tiny_class(sampling, lesion_share):
    from monai.data import MetaTensor

    image, label = _organ_and_lesion(np.random.default_rng(0))
    d = {"image": MetaTensor(torch.as_tensor(image)), "label": MetaTensor(torch.as_tensor(label))}
    crop = patch_sampler((8, 8, 4), 600, 1.0, 1.0, 0.0, sampling, num_classes=3)
    crop.set_random_state(7)
    centres = np.array([c["label"][0, 4, 4, 2].item() for c in crop(d)])  # MONAI puts a crop's centre at size // 2
    foreground = centres[centres > 0]
    assert len(foreground) > 200  # about half are centred on foreground (pos / neg = 1) ...
    share = float((foreground == 2).mean())  # ... and of those, the lesion's share
    assert lesion_share[0] <= share <= lesion_share[1], share


@pytest.mark.parametrize(
    ("present", "share", "ratios"),
    [
        ([True, True, True], 1 / 3, [2 / 3, 1 / 6, 1 / 6]),
        ([True, True, False], 1 / 3, [2 / 3, 1 / 3, 0.0]),  # an absent class: the foreground share stays
        ([True, False, False], 1 / 3, [1.0, 0.0, 0.0]),
        ([False, True, True], 1 / 3, [0.0, 0.5, 0.5]),  # no background to sample: all foreground
    ],
)
def test_class_ratios_split_the_foreground_share_among_present_classes(present, share, ratios):
    assert class_ratios(present, share) == pytest.approx(ratios)


@pytest.mark.parametrize(("sampling", "transform"), [("classes", "RandCropByClassesd"),
                                                     ("any", "RandCropByPosNegLabeld")])  # fmt: skip
def test_datamodule_exposes_the_foreground_sampling(tmp_path: Path, sampling, transform):
    from medimg.data.datamodule import SegmentationDataModule

    tiny = make_phantom_msd(tmp_path / "Tiny", n_cases=3, n_test=0, shape=(24, 24, 16))
    dm = SegmentationDataModule(dataset_dir=str(tiny), patch_size=(16, 16, 8), samples_per_volume=2,
                                foreground_sampling=sampling, num_workers=0, num_folds=3)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert type(dm.augment.transforms[0]).__name__ == transform
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape[2:]) == (16, 16, 8) and batch["label"].max() >= 0
    with pytest.raises(ConfigError, match="foreground_sampling"):
        SegmentationDataModule(dataset_dir=str(tiny), foreground_sampling="largest")  # type: ignore[arg-type]
