"""From a dataset fingerprint to a training recipe, every value with its reason (nnU-Net's planning, for
LightningCLI). :func:`make_plan` runs the steps, each a named function in its own module:

* target spacing (:func:`target_spacing`): the median spacing; for strongly anisotropic data (one axis coarser
  than :data:`ANISOTROPY_THRESHOLD` x the others *and* with fewer than 1 / threshold as many voxels) that axis
  takes the 10th percentile of its spacings instead (nnU-Net's rule: fewer interpolation artefacts on thick
  slices);
* memory (:func:`medimg.plan.patch.fit_memory`): patch with aspect 1 / spacing, as large as 256^3, clipped to the
  median resampled shape, shrunk to fit the topology (:mod:`medimg.plan.topology`), then along the axis largest
  relative to the median shape until a training step of ``MIN_BATCH`` fits the memory budget -- nnU-Net's rule,
  and all of it on a GPU;
* time, CPU only (:func:`medimg.plan.time_rule.fit_time`): a few smaller candidates timed, the largest whose
  step leaves ``MIN_STEPS_CPU`` steps in the budget chosen (see that module for the rule and its constants);
* network (:func:`medimg.plan.network.network`): MONAI DynUNet with that topology on a GPU (nnU-Net's 32..320
  features); on a CPU the small option, MONAI UNet with the same strides;
* batch (:func:`medimg.plan.batch.plan_batch`): as many patches as the budget allows (measured,
  :mod:`medimg.plan.measure`), at least ``MIN_BATCH``, at most 5 % of the dataset's voxels per step (nnU-Net's
  overfitting cap);
* schedule (:func:`medimg.plan.schedule.schedule`): the steps the measured step time allows in the time budget
  after the validations, priced from a measured inference forward;
* config and reasons (:mod:`medimg.plan.recipe`): normalisation (:func:`normalisation`), class-balanced
  foreground oversampling, the LightningCLI config and the reason beside each value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from medimg.plan.batch import plan_batch
from medimg.plan.budget import Budget
from medimg.plan.fingerprint import DatasetFingerprint
from medimg.plan.patch import fit_memory
from medimg.plan.recipe import Plan, PlanParts, build_plan
from medimg.plan.schedule import schedule
from medimg.plan.time_rule import TimeChoice, fit_time

__all__ = ["Budget", "Plan", "make_plan", "median_resampled_shape", "normalisation", "target_spacing"]

#: nnU-Net's ``ANISO_THRESHOLD``: an axis this many times coarser than the others is "strongly anisotropic"
ANISOTROPY_THRESHOLD = 3.0
#: the datamodule's default k of its k-fold split: the validation fold is 1 / NUM_FOLDS of the cases
NUM_FOLDS = 5


def target_spacing(spacings: npt.NDArray[np.float64], shapes: npt.NDArray[np.float64]) -> tuple[tuple[float, ...], str]:
    """The median spacing, with nnU-Net's rule for strongly anisotropic data; (spacing, reason)."""
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[a] for a in others)
    aniso_voxels = median_shape[worst] * ANISOTROPY_THRESHOLD < min(median_shape[a] for a in others)
    reason = "median spacing of the training cases (mm, RAS axis order)"
    if aniso_spacing and aniso_voxels:
        tenth = float(np.percentile(spacings[:, worst], 10))
        target[worst] = max(tenth, max(target[a] for a in others) + 1e-5)
        reason = (
            f"median spacing, but axis {worst} is over {ANISOTROPY_THRESHOLD:g}x coarser with under 1/"
            f"{ANISOTROPY_THRESHOLD:g} the voxels: its 10th percentile instead (nnU-Net's anisotropy rule)"
        )
    return tuple(round(float(s), 5) for s in target), reason


def median_resampled_shape(fp: DatasetFingerprint, spacing: Sequence[float]) -> tuple[int, ...]:
    """Median shape (voxels) of the cases once resampled to ``spacing``."""
    shapes = np.rint(fp.shapes * fp.spacings / np.asarray(spacing, dtype=np.float64))
    return tuple(max(int(v), 1) for v in np.median(shapes, axis=0))


def make_plan(fp: DatasetFingerprint, budget: Budget, dataset_dir: str | os.PathLike[str]) -> Plan:
    """Plan a training run for the fingerprinted dataset within ``budget``."""
    spacing, spacing_reason = target_spacing(fp.spacings, fp.shapes)
    median = median_resampled_shape(fp, spacing)
    channels = (fp.in_channels, max(fp.labels) + 1)
    sized = fit_memory(spacing, median, channels, budget, dataset_dir)
    time_choice: TimeChoice | None = None
    if budget.device == "cpu":  # the GPU plan keeps nnU-Net's rule: the largest patch the memory allows
        sized, time_choice = fit_time(spacing, median, channels, sized, budget)
    batch = plan_batch(sized, fp, median, budget, time_choice.step_limit_s if time_choice else None)
    sched = schedule(budget, batch.measurement, batch.size, n_val_cases=math.ceil(len(fp.cases) / NUM_FOLDS),
                     val_shape=median, patch=sized.patch)  # fmt: skip
    parts = PlanParts(fp, budget, dataset_dir, spacing, spacing_reason, median, sized, time_choice, batch, sched,
                      normalisation(fp))  # fmt: skip
    return build_plan(parts)


def normalisation(fp: DatasetFingerprint) -> tuple[str, list[float], list[float], str]:
    """(intensity mode, CT window, CT mean/std, reason) from the dataset's foreground intensities."""
    if fp.is_ct:
        s = fp.foreground_intensity[0]
        window = [round(s["p0.5"], 2), round(s["p99.5"], 2)]
        stats = [round(s["mean"], 3), round(max(s["std"], 1e-3), 3)]
        reason = (
            "CT: clip to the dataset's foreground 0.5-99.5 percentiles (HU), z-score with the foreground "
            "mean and std (nnU-Net's CTNormalization)"
        )
        return "ct_zscore", window, stats, reason
    reason = f"{fp.channel_names}: z-score each image's non-zero voxels per channel (nnU-Net's ZScoreNormalization)"
    return "mr", [-57.0, 164.0], [0.0, 1.0], reason
