"""Several models on one case, or test-time flips of one: the ensemble's label map, its uncertainty maps and the
case's risk record, written beside the mask.

Members are models trained with one recipe (nnU-Net trains one per cross-validation fold: ``medimg fit
--data.fold K``): the same preprocessing (orientation, spacing, intensity), the same classes and windows. A list
whose recipes differ is refused in one line naming the field, since averaging probabilities of models that
see the image on different grids or label different classes is meaningless. Test-time augmentation (TTA) is the
single-model option: the identity and one flip along each spatial axis, each flipped back (nnU-Net mirrors all
eight combinations at twice the cost; four are enough to see where the model is unstable).

Each member runs MONAI's sliding-window inference (:meth:`medimg.inference.model.Model.infer`) and keeps its
whole softmax map on the preprocessed grid, divided by the recipe's temperature first
(:mod:`medimg.metrics.calibration`): peak memory is members x classes x voxels x 4 bytes (8 maps x 2 classes of a
256^3 volume: 1.1 GB), unlike :func:`medimg.inference.blending.sliding_window_labels`, which streams labels only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import MedimgError, ModelError
from medimg.inference.model import Model, open_model
from medimg.inference.pipeline import load_image, preprocess, resample_to
from medimg.inference.recipe import Recipe
from medimg.inference.uncertainty import RiskRecord, risk_record, uncertainty_maps, voxel_volume_mm3
from medimg.io.volume import Volume

__all__ = [
    "SHARED_FIELDS",
    "TTA_FLIPS",
    "Ensemble",
    "UncertainSegmentation",
    "case_name",
    "check_members",
    "open_ensemble",
    "outputs_beside",
    "recipe_difference",
]

#: the recipe fields members must share, checked in this order: what the image is turned into and what the
#: output classes mean. Provenance (checkpoint, version, precision, temperature), the network and its sliding
#: windows may differ: each member runs with its own (nnU-Net ensembles other architectures too).
SHARED_FIELDS = ("task", "in_channels", "num_classes", "preprocessing", "class_names")
#: the flips of test-time augmentation, as tensor axes of (N, C, X, Y, Z): none, then each spatial axis
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))


def _plain(value: Any) -> Any:
    """``value`` as JSON sees it (tuples and lists compare equal: a recipe read from an export has lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def recipe_difference(a: Recipe, b: Recipe) -> str | None:
    """The first of :data:`SHARED_FIELDS` in which two recipes differ (``preprocessing.spacing``,
    ``num_classes``, ...), with both values; None when the members can be averaged."""
    da, db = _plain(asdict(a)), _plain(asdict(b))
    for key in SHARED_FIELDS:
        va, vb = da.get(key), db.get(key)
        if key == "preprocessing" and isinstance(va, dict) and isinstance(vb, dict):
            for sub in sorted(set(va) | set(vb)):
                if va.get(sub) != vb.get(sub):
                    return f"preprocessing.{sub} ({va.get(sub)!r} vs {vb.get(sub)!r})"
        elif va != vb:
            return f"{key} ({va!r} vs {vb!r})"
    return None


def _name(model: Model, i: int) -> str:
    return model.path.name if model.path is not None else f"member {i + 1}"


def check_members(models: Sequence[Model]) -> None:
    """Refuse an empty list, a model that is not a segmentation model, and members whose recipes differ (one
    line naming both members and the field, see :func:`recipe_difference`)."""
    if not models:
        raise MedimgError("an ensemble needs at least one model")
    first = models[0]
    for i, m in enumerate(models):
        if m.recipe.task != "segmentation" or m.recipe.preprocessing is None:
            raise ModelError(f"ensemble members must be segmentation models, this is a {m.recipe.task} model", m.path)
        diff = recipe_difference(first.recipe, m.recipe)
        if diff is not None:
            raise ModelError(
                f"ensemble members must share one recipe, but {_name(first, 0)} and {_name(m, i)} differ in {diff}; "
                "train every member with one plan (medimg fit --data.fold K)",
                m.path,
            )


def case_name(image: str | os.PathLike[str]) -> str:
    """How a worklist names the case of ``image``: a file by its name before the first dot, a folder by its name."""
    p = Path(image)
    return p.name if p.is_dir() else p.name.split(".")[0]


def outputs_beside(mask: str | os.PathLike[str]) -> dict[str, Path]:
    """The files written beside ``mask`` (``case.nii.gz``): ``case_uncertainty.nii.gz`` (entropy of the mean
    probability, nats), ``case_disagreement.nii.gz`` (fraction of members) and ``case_risk.json``."""
    p = Path(mask)
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        raise MedimgError("with uncertainty the mask is written as NIfTI: give it a .nii.gz name", p)
    stem, suffix = (p.name[:-7], ".nii.gz") if p.name.lower().endswith(".nii.gz") else (p.name[:-4], ".nii")
    return {
        "mask": p,
        "uncertainty": p.with_name(f"{stem}_uncertainty{suffix}"),
        "disagreement": p.with_name(f"{stem}_disagreement{suffix}"),
        "risk": p.with_name(f"{stem}_risk.json"),
    }


@dataclass
class UncertainSegmentation:
    """One case segmented by an ensemble: ``mask`` (uint8 labels), ``uncertainty`` (entropy of the mean probability,
    nats) and ``disagreement`` (fraction of members) on the input's voxel grid, the ``risk`` record, and the
    ``written`` files."""

    mask: Volume
    uncertainty: Volume
    disagreement: Volume
    risk: RiskRecord
    written: dict[str, Path] = field(default_factory=dict)
    #: with ``probability_class=K``: the mean (temperature-scaled) probability of class K, 0..1, float32
    probability: Volume | None = None


def _device(model: Model) -> torch.device:
    if model.module is None:
        return torch.device("cpu")
    return next(iter(model.module.parameters()), torch.zeros(0)).device


@dataclass
class Ensemble:
    """Members with one recipe (checked on construction), each optionally with test-time flips (``tta``)."""

    members: list[Model]
    tta: bool = False

    def __post_init__(self) -> None:
        check_members(self.members)

    @property
    def recipe(self) -> Recipe:
        return self.members[0].recipe

    @property
    def source(self) -> str:
        """``"ensemble"``, ``"tta"`` or ``"ensemble+tta"`` (``"single"``: one model, no flips)."""
        several = len(self.members) > 1
        return {(True, True): "ensemble+tta", (True, False): "ensemble", (False, True): "tta"}.get(
            (several, self.tta), "single"
        )

    def probabilities(self, x: torch.Tensor) -> np.ndarray[Any, Any]:
        """(M, C, X, Y, Z) softmax maps of a preprocessed (1, C_in, X, Y, Z) volume: each member's logits, under
        each flip (flipped back), divided by the member's temperature."""
        maps = []
        for member in self.members:
            dev = _device(member)
            for axes in TTA_FLIPS if self.tta else ((),):
                xin = torch.flip(x, axes) if axes else x
                logits = member.infer(xin.to(dev)).float()
                if axes:
                    logits = torch.flip(logits, axes)
                probs = torch.softmax(logits / float(member.recipe.temperature), dim=1)
                maps.append(probs[0].cpu().numpy())
        return np.stack(maps)

    def segment(
        self,
        image: str | os.PathLike[str],
        output: str | os.PathLike[str] | None = None,
        *,
        probability_class: int | None = None,
    ) -> UncertainSegmentation:
        """Segment ``image`` with every member; the label map is the argmax of the mean probability. With
        ``output`` (``.nii.gz``) the mask, the uncertainty and disagreement maps and the risk JSON are written
        atomically beside each other (:func:`outputs_beside`), before anything is computed the names are checked.
        ``probability_class`` K > 0 also returns class K's mean probability, resampled (linearly) to the input."""
        paths = outputs_beside(output) if output is not None else {}
        if probability_class is not None and not 0 < probability_class < self.recipe.num_classes:
            raise MedimgError(
                f"class {probability_class} is not a foreground class of the model (1..{self.recipe.num_classes - 1})"
            )
        original = load_image(image, self.recipe.in_channels)
        affine, shape = np.asarray(original.affine, dtype=np.float64), tuple(int(s) for s in original.shape[1:])
        assert self.recipe.preprocessing is not None  # checked by check_members
        data = preprocess(original, self.recipe.preprocessing, copy=False)
        del original
        x = data.as_tensor() if hasattr(data, "as_tensor") else torch.as_tensor(data)
        with torch.no_grad():
            maps = uncertainty_maps(self.probabilities(x[None].float()))
        risk = risk_record(
            maps, voxel_volume_mm3(np.asarray(data.affine)), case_id=case_name(image), source=self.source
        )

        def back(values: np.ndarray[Any, Any], mode: str) -> np.ndarray[Any, Any]:
            return resample_to(torch.from_numpy(np.ascontiguousarray(values))[None], data, affine, shape, mode)

        meta = {"source": str(image)}
        result = UncertainSegmentation(
            Volume(back(maps.labels, "nearest").astype(np.uint8), affine, {**meta, "modality": "SEG"}),
            Volume(back(maps.entropy, "bilinear").astype(np.float32), affine, meta),
            Volume(back(maps.disagreement, "bilinear").astype(np.float32), affine, meta),
            risk,
        )
        if probability_class is not None:
            p = np.clip(back(maps.mean[probability_class], "bilinear"), 0.0, 1.0).astype(np.float32)
            result.probability = Volume(p, affine, meta)
        if paths:
            result.written = _write(result, paths)
        return result


def _write(result: UncertainSegmentation, paths: dict[str, Path]) -> dict[str, Path]:
    from medimg.io.atomic import atomic_write_text

    result.mask.save(paths["mask"])
    result.uncertainty.save(paths["uncertainty"])
    result.disagreement.save(paths["disagreement"])
    atomic_write_text(paths["risk"], json.dumps(result.risk.as_dict(), indent=2) + "\n")
    return paths


def open_ensemble(
    paths: Sequence[str | os.PathLike[str] | Model],
    *,
    tta: bool = False,
    device: str | None = None,
    threads: int | None = None,
) -> Ensemble:
    """An :class:`Ensemble` of checkpoints / exports (each opened once, :func:`open_model`); one model with
    ``tta=True`` is the single-model option. The same file given twice is refused (its members would agree
    by construction)."""
    models = [open_model(p, device=device, threads=threads) for p in paths]
    seen: dict[str, Path | None] = {}
    for m in models:
        if m.path is not None and m.sha256 in seen:
            raise ModelError(f"the same model is given twice (also as {seen[m.sha256]}); give distinct members", m.path)
        seen[m.sha256] = m.path
    return Ensemble(models, tta=tta)
