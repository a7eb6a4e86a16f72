"""The memory-saving inference path (issue 33) gives the labels of a straightforward one, voxel for voxel.

The saving path: CT intensity map in place (:class:`~medimg.transforms.pipelines.ScaleIntensityRangeInPlaced`),
blending into tiles that live from their first window to their last
(:func:`~medimg.inference.blending.sliding_window_labels`). The reference: MONAI's out-of-place transforms, and
every window's weighted logits summed into one full-size float32 array in MONAI's window order, then the
argmax. No memory figure is asserted here (benchmarks/export_bench.py measures it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medimg.data.phantoms import phantom_case
from medimg.inference.blending import sliding_window_labels
from medimg.inference.pipeline import load_image, preprocess, resample_to, segment_with
from medimg.inference.recipe import Recipe
from medimg.transforms.pipelines import Preprocessing, ScaleIntensityRangeInPlaced, preprocessing

PREP = {"spacing": [1.5, 1.5, 2.0], "intensity": "ct", "ct_window": [-200.0, 300.0], "crop_foreground": False,
        "patch_size": [16, 16, 16]}  # fmt: skip


def dense_labels(image: torch.Tensor, predictor, roi: tuple[int, ...], overlap: float) -> torch.Tensor:
    """Reference: all classes' weighted logits over the whole (padded) volume in float32, MONAI's window order."""
    from monai.data.utils import compute_importance_map, dense_patch_slices

    spatial = tuple(image.shape[1:])
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for r, s in zip(roi, spatial, strict=True)]
    image = F.pad(image, [v for p in reversed(pads) for v in p])
    size = tuple(image.shape[1:])
    interval = tuple(r if r == s else max(int(r * (1 - overlap)), 1) for r, s in zip(roi, size, strict=True))
    weight = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).to(torch.float32)
    acc = None
    for s in dense_patch_slices(size, roi, interval):
        logits = predictor(image[(slice(None), *s)][None])[0].to(torch.float32) * weight
        if acc is None:
            acc = torch.zeros(logits.shape[0], *size)
        acc[(slice(None), *s)] += logits
    assert acc is not None
    labels = torch.max(acc, dim=0).indices.to(torch.uint8)
    return labels[tuple(slice(lo, n - hi) for (lo, hi), n in zip(pads, size, strict=True))]


def small_net(classes: int) -> torch.nn.Module:
    """A seeded random 3D UNet: logits that vary with the window's content, with near-ties between classes."""
    from monai.networks.nets import UNet

    torch.manual_seed(3)
    return UNet(3, 1, classes, channels=(4, 8), strides=(2,), num_res_units=1).eval()


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "batch"),
    [((41, 30, 27), (16, 16, 16), 0.25, 1), ((36, 20, 33), (16, 12, 16), 0.5, 3), ((12, 9, 20), (16, 16, 16), 0.25, 2)],
)
def test_tiled_blending_gives_the_dense_reference_labels(shape, roi, overlap, batch):
    net = small_net(7)
    image = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tiled = sliding_window_labels(image, net, roi, sw_batch_size=batch, overlap=overlap)
        reference = dense_labels(image, net, roi, overlap)
    assert tiled.dtype == torch.uint8 and tiled.shape == reference.shape == shape
    assert torch.equal(tiled, reference)
    assert len(torch.unique(reference)) >= 3  # several classes compete: an all-one-class map proves nothing


@pytest.mark.parametrize("window", [((-57.0, 164.0), (0.0, 1.0)), ((-57.0, 164.0), (-1.26, 1.61))])
def test_in_place_ct_window_gives_monais_values(window):
    from monai.data import MetaTensor
    from monai.transforms import ScaleIntensityRanged

    (lo, hi), (b_lo, b_hi) = window
    hu = torch.randint(-1100, 1500, (1, 20, 18, 9), generator=torch.Generator().manual_seed(2)).to(torch.float32)
    monai = ScaleIntensityRanged("image", lo, hi, b_lo, b_hi, clip=True)({"image": MetaTensor(hu.clone())})["image"]
    image = MetaTensor(hu.clone())
    ours = ScaleIntensityRangeInPlaced("image", lo, hi, b_lo, b_hi)({"image": image})["image"]
    assert ours.data_ptr() == image.data_ptr()  # in place: no full-size copy
    assert torch.equal(torch.as_tensor(monai), torch.as_tensor(ours))


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Path]:
    """CT phantoms on the model's grid (preprocessing keeps the grid) and on another one (it resamples)."""
    folder = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(4)
    same, _ = phantom_case(rng, shape=(40, 34, 24), spacing=(1.5, 1.5, 2.0))
    other, _ = phantom_case(rng, shape=(36, 30, 22), spacing=(1.2, 1.7, 2.5))
    return {"same grid": same.save(folder / "same.nii.gz"), "other grid": other.save(folder / "other.nii.gz")}


@pytest.mark.parametrize("grid", ["same grid", "other grid"])
def test_segment_gives_the_straightforward_pipelines_labels(cases, grid):
    classes, roi = 6, (16, 16, 16)
    net = small_net(classes)
    recipe = Recipe(task="segmentation", net="unet", in_channels=1, num_classes=classes, preprocessing=PREP,
                    roi_size=roi, sw_batch_size=2)  # fmt: skip
    with torch.no_grad():
        mask = np.asarray(segment_with(net, recipe, cases[grid], windows_per_call=1).array)
        original = load_image(cases[grid], 1)
        steps = preprocessing(Preprocessing.from_dict(PREP), keys=["image"], load=False)  # MONAI, out of place
        data = steps({"image": original.clone()})["image"]
        assert torch.equal(torch.as_tensor(preprocess(original, PREP)), torch.as_tensor(data))
        labels = dense_labels(data.as_tensor(), net, roi, recipe.overlap)
    reference = resample_to(labels[None], data, np.asarray(original.affine), tuple(original.shape[1:]))
    assert mask.shape == tuple(original.shape[1:])
    assert np.array_equal(mask, reference.astype(np.uint8))
    assert len(np.unique(mask)) >= 3


def test_timings_record_where_the_peak_memory_was_reached(cases):
    from medimg.inference.timings import STAGES, Timings

    recipe = Recipe(task="segmentation", net="unet", in_channels=1, num_classes=3, preprocessing=PREP,
                    roi_size=(16, 16, 16), sw_batch_size=1)  # fmt: skip
    t = Timings()
    with torch.no_grad():
        vol = segment_with(small_net(3), recipe, cases["other grid"], timings=t)
    record = vol.meta["timings"]
    by_stage = record["rss_high_water_by_stage_bytes"]
    assert set(STAGES) - {"network"} <= set(by_stage)  # every stage read the mark (network: when it raised it)
    marks = [by_stage[s] for s in STAGES if s in by_stage]
    assert marks == sorted(marks)  # a high-water mark never falls
    assert record["peak_rss_stage"] in STAGES and by_stage[record["peak_rss_stage"]] == max(marks)
    assert record["peak_rss_bytes"] >= max(marks)
    assert f"({record['peak_rss_stage']})" in t.summary().replace("(in ", "(")
