"""How sure is the model of one case: voxel uncertainty maps and a per-case risk record, from several softmax maps.

The maps come from the members of an ensemble (models trained on other cross-validation folds, as nnU-Net trains
them) or from test-time flips of one model (:mod:`medimg.inference.ensemble` makes them). Every function here works
on plain arrays of one case on one voxel grid:

* ``probs``: (M, C, X, Y, Z) float softmax probabilities, M members (or flips), C classes (background included);
* the mean probability is the ensemble's prediction, its argmax the label map.

Voxel maps (Mehrtash et al., IEEE TMI 2020; Zenk et al., Medical Image Analysis 2025):

* **entropy** of the mean probability, in nats (0: certain; ln C: uniform) -- total uncertainty;
* **mutual information**: entropy of the mean minus the mean of the members' entropies (>= 0) -- the part
  that comes from the members disagreeing (epistemic);
* **disagreement**: the fraction of members whose argmax differs from the ensemble's argmax (0..1).

Per-case risk (:class:`RiskRecord`): the mean pairwise Dice between the members' masks (Zenk et al.'s best simple
failure detector), the mean max-softmax over the predicted foreground (the baseline every score must beat:
Bernhardt et al., TMLR 2022), the predicted foreground volume in mL and its spread across members. MONAI has
no uncertainty inferer (Project-MONAI/MONAI#5207), so these few lines are written here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.errors import MedimgError

__all__ = [
    "RiskRecord",
    "UncertaintyMaps",
    "pairwise_dice",
    "risk_record",
    "uncertainty_maps",
    "voxel_volume_mm3",
]

#: below this mean pairwise Dice, the members disagree enough to say so in the risk's reason
DISAGREE_DICE = 0.9
#: below this mean max-softmax over the predicted foreground, the model is unsure enough to say so
UNSURE_SOFTMAX = 0.9
#: above this coefficient of variation of the members' volumes (std / mean), the volume is said to spread
VOLUME_SPREAD_CV = 0.1
#: a voxel whose mean foreground probability (1 - background) reaches this counts as nearly foreground: an organ
#: the model sees at 30 % is not called, and the max-softmax over the called voxels alone would miss it
NEAR_FOREGROUND = 0.1
#: the risk of an empty prediction: shown first. No score here tells an organ the members confidently miss (a
#: low-contrast scan: every member and flip agrees on nothing, at max-softmax 1.0) from a true absence
EMPTY_RISK = 1.0

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class UncertaintyMaps:
    """The voxel maps of one case (see the module docstring): ``mean`` (C, X, Y, Z) mean probability, ``labels``
    (X, Y, Z) uint8 its argmax, ``member_labels`` (M, X, Y, Z) uint8 each member's argmax, ``entropy`` (nats),
    ``mutual_information`` (nats) and ``disagreement`` (fraction of members), each (X, Y, Z) float32."""

    mean: FloatArray
    labels: npt.NDArray[np.uint8]
    member_labels: npt.NDArray[np.uint8]
    entropy: FloatArray
    mutual_information: FloatArray
    disagreement: FloatArray


def _entropy(p: FloatArray, axis: int) -> FloatArray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    return np.asarray(-(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=axis), dtype=np.float32)


def uncertainty_maps(probs: npt.ArrayLike) -> UncertaintyMaps:
    """The voxel maps of ``probs`` (M, C, X, Y, Z) softmax probabilities of M members (see the module docstring).

    Raises:
        MedimgError: not 5 axes, or the probabilities do not sum to 1 over the classes.
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 5:
        raise MedimgError(f"member probabilities must be (members, classes, X, Y, Z), got shape {p.shape}")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise MedimgError("member probabilities must sum to 1 over the classes (softmax, not logits)")
    mean = p.mean(axis=0)
    labels = mean.argmax(axis=0).astype(np.uint8)
    members = p.argmax(axis=1).astype(np.uint8)
    entropy = _entropy(mean, axis=0)
    mutual = np.clip(entropy - _entropy(p, axis=1).mean(axis=0), 0.0, None).astype(np.float32)
    disagreement = (members != labels[None]).mean(axis=0, dtype=np.float32)
    return UncertaintyMaps(mean, labels, members, entropy, mutual, disagreement)


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice of two masks; two empty masks agree (1.0)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def pairwise_dice(member_labels: npt.ArrayLike, num_classes: int) -> float:
    """Mean Dice over every pair of members' label maps (M, X, Y, Z), averaged over the foreground classes
    either member of a pair predicts (1.0 for one member, or when no member predicts any foreground)."""
    m = np.asarray(member_labels)
    scores = []
    for i, j in itertools.combinations(range(len(m)), 2):
        per_class = [
            _dice(m[i] == c, m[j] == c) for c in range(1, num_classes) if bool((m[i] == c).any() or (m[j] == c).any())
        ]
        scores.append(float(np.mean(per_class)) if per_class else 1.0)
    return float(np.mean(scores)) if scores else 1.0


@dataclass(frozen=True)
class RiskRecord:
    """How likely the case's segmentation is wrong, and why (what ``<mask>_risk.json`` holds).

    Attributes:
        case_id: the image's name before its first dot (a DICOM folder's own name): how worklists name it.
        source: ``"ensemble"``, ``"tta"`` (flips of one model) or ``"ensemble+tta"``; ``members`` maps averaged.
        pairwise_dice: mean Dice between the members' masks (1: all agree).
        max_softmax: mean of the highest class probability over the voxels the ensemble calls foreground or
            gives a foreground probability of at least :data:`NEAR_FOREGROUND` (1.0 when there are none).
        volume_ml / volume_ml_spread: the ensemble's foreground volume in mL, and the standard deviation of the
            members' foreground volumes in mL.
        mean_entropy: mean entropy of the mean probability (nats) over the voxels any member calls foreground.
        risk: ``1 - pairwise_dice * max_softmax``, 0..1, higher is riskier (the worklist's ``order="risk"``
            sorts on it): the members' agreement (Zenk et al.'s recommended score) discounted by the confidence,
            so that members agreeing on an empty mask while they half-see an organ still rank high; one map
            without flips has ``pairwise_dice`` 1, so its risk is ``1 - max_softmax``. An empty prediction has
            risk :data:`EMPTY_RISK` (1.0): a reader looks at every case where nothing was found.
            ``benchmarks/uncertainty_bench.py`` measures each part against the true Dice (AURC).
        reason: what makes the case risky, in words, for the reader.
    """

    case_id: str
    source: str
    members: int
    pairwise_dice: float
    max_softmax: float
    volume_ml: float
    volume_ml_spread: float
    mean_entropy: float
    risk: float
    reason: str

    @property
    def volume_cv(self) -> float:
        """The volume spread relative to the volume (coefficient of variation; 0 for an empty prediction)."""
        return self.volume_ml_spread / self.volume_ml if self.volume_ml > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "volume_cv": self.volume_cv}


def _reason(dice: float, softmax: float, cv: float, volume_ml: float, members: int) -> str:
    """The risk's reason, most telling first; ``"members agree"`` when nothing stands out."""
    parts = []
    if volume_ml == 0:
        parts.append("nothing segmented")
    if members > 1 and dice < DISAGREE_DICE:
        parts.append(f"members disagree (pairwise Dice {dice:.2f})")
    if softmax < UNSURE_SOFTMAX:
        parts.append(f"low confidence (max-softmax {softmax:.2f})")
    if cv > VOLUME_SPREAD_CV:
        parts.append(f"volume spread {100 * cv:.0f} %")
    return "; ".join(parts) or ("members agree" if members > 1 else "confident")


def risk_record(maps: UncertaintyMaps, voxel_mm3: float, *, case_id: str = "", source: str = "ensemble") -> RiskRecord:
    """The :class:`RiskRecord` of one case's maps; ``voxel_mm3`` is the volume of one voxel of their grid in mm^3."""
    if not voxel_mm3 > 0:
        raise MedimgError(f"voxel volume must be positive, got {voxel_mm3} mm^3")
    num_classes = int(maps.mean.shape[0])
    members = int(maps.member_labels.shape[0])
    fore = maps.labels > 0
    any_fore = (maps.member_labels > 0).any(axis=0)
    dice = pairwise_dice(maps.member_labels, num_classes)
    near = fore | (1.0 - maps.mean[0] >= NEAR_FOREGROUND)  # what is called, or nearly called, foreground
    softmax = float(maps.mean.max(axis=0)[near].mean()) if bool(near.any()) else 1.0
    volume = float(fore.sum()) * voxel_mm3 / 1000.0
    spread = float(np.std((maps.member_labels > 0).reshape(members, -1).sum(axis=1))) * voxel_mm3 / 1000.0
    entropy = float(maps.entropy[any_fore].mean()) if bool(any_fore.any()) else 0.0
    risk = EMPTY_RISK if volume == 0 else 1.0 - dice * softmax
    cv = spread / volume if volume > 0 else 0.0
    why = _reason(dice, softmax, cv, volume, members)
    return RiskRecord(case_id, source, members, dice, softmax, volume, spread, entropy, risk, why)


def voxel_volume_mm3(affine: npt.ArrayLike) -> float:
    """The volume of one voxel in mm^3: the absolute determinant of the affine's 3x3 part (any orientation)."""
    a = np.asarray(affine, dtype=np.float64)
    v = abs(float(np.linalg.det(a[:3, :3])))
    if not math.isfinite(v) or v <= 0:
        raise MedimgError(f"the image's affine has no voxel volume (determinant {v})")
    return v
