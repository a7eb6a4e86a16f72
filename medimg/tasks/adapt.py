"""``medimg adapt``: fit a trained segmentation checkpoint to a new site's scanner with its *unlabelled* images.

Two established methods, both touching normalisation layers only:

* **AdaBN** (Li et al. 2016, "Revisiting batch normalization for practical domain adaptation"): the batch-norm
  running means and variances are re-estimated on the new site's images; no weight changes.
* **TENT** (Wang et al. 2021, "Tent: fully test-time adaptation by entropy minimization"): the normalisation
  layers' affine parameters (scale, shift) are trained to lower the entropy of the predictions on the new site.
  The statistics stay those of the checkpoint (or AdaBN's, with ``"adabn+tent"``) and the layers stay in eval
  mode, so the written checkpoint predicts exactly as it was adapted. The networks ``medimg plan`` makes use
  instance normalisation without affine parameters (MONAI's default) and no running statistics, so AdaBN has
  nothing to re-estimate and TENT nothing to train: TENT then gives each such layer an affine scale 1 and shift 0
  (the network predicts exactly as before) and trains those; the written checkpoint's ``net_kwargs`` ask for
  affine instance norms, so it opens like any other.

``method="auto"`` (the default) picks what applies to the network: AdaBN where it has batch-norm running
statistics, TENT otherwise.

The windows the statistics and the entropy are computed on are sampled like training samples them: half
centred on what the model itself segments as foreground, half on background
(MONAI ``RandCropByPosNegLabeld`` with the model's own prediction as the label). A blind tiling of a volume that
is mostly background re-estimates background statistics and can lower Dice (0.918 -> 0.906 on a shifted
phantom).

Adaptation can still hurt, and the new site has no labels to tell. So an *unlabelled proxy* is measured before and
after on the new site's images -- agreement under test-time flips (the mean foreground Dice between the prediction
and the un-flipped prediction of each flipped image), with the mean prediction entropy where either calls
foreground reported beside it -- and a checkpoint whose flip agreement fell is not written
(:class:`AdaptationRefusedError`, with the figures). A proxy is not Dice: it can refuse a useful adaptation and
let a harmful one through (on a model whose batch-norm statistics lag its weights, flip agreement fell while AdaBN
raised Dice; see the README's sites section).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medimg.errors import ConfigError, MedimgError
from medimg.tasks.adapt_norms import ADAPT_METHODS, batch_norms, enable_instance_norm_affine, norm_layers, pick_method

__all__ = [
    "ADAPT_METHODS",
    "AdaptationRefusedError",
    "AdaptationReport",
    "Proxy",
    "adapt",
    "adapt_checkpoint",
    "list_images",
    "proxy",
]

log = logging.getLogger(__name__)

#: the adapted model must predict at least this fraction of the original's foreground volume (collapse guard)
MIN_FOREGROUND_RATIO = 0.5

#: a CT in Hounsfield units has air (-1000 HU) somewhere; an image whose darkest voxel is above this is not one
CT_AIR_HU = -500.0


class AdaptationRefusedError(MedimgError):
    """The unlabelled proxy says the adapted model is worse than the one it started from; nothing was written."""


@dataclass(frozen=True)
class Proxy:
    """Unlabelled quality of a model on a set of images: ``flip_agreement`` (mean foreground Dice between the
    prediction and the prediction of the flipped image flipped back, over the three axes; higher is better),
    ``entropy`` (mean softmax entropy in nats over the voxels either prediction calls foreground; lower is more
    confident) and ``foreground`` (the fraction of voxels predicted foreground: an adaptation that collapses to
    "all background" agrees with itself perfectly, this is what shows it)."""

    flip_agreement: float
    entropy: float
    foreground: float = 0.0

    def __str__(self) -> str:
        return (
            f"flip agreement {self.flip_agreement:.4f}, entropy {self.entropy:.4f}, "
            f"foreground {100 * self.foreground:.2f} %"
        )


@dataclass
class AdaptationReport:
    """What :func:`adapt` did: method, images, windows, the proxy before and after, and whether it kept it."""

    method: str
    images: list[str]
    windows: int
    before: Proxy
    after: Proxy
    images_digest: str = ""
    source_checkpoint_sha256: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def improved(self) -> bool:
        """The proxy did not get worse: flip agreement at least as high as before, and the predicted foreground did
        not collapse (at least :data:`MIN_FOREGROUND_RATIO` of before; it may grow: a model under-segmenting the
        new site is what adaptation should fix). Entropy is reported, not
        decided on: TENT lowers it by construction, and its region (what either model calls foreground) moves
        with the predictions, so before and after are not measured on the same voxels."""
        kept = self.after.flip_agreement >= self.before.flip_agreement
        return kept and self.after.foreground >= MIN_FOREGROUND_RATIO * self.before.foreground

    def as_record(self) -> dict[str, Any]:
        """The record written into the adapted checkpoint (``checkpoint["adaptation"]``): paths by name only."""
        d = asdict(self)
        d["images"] = [Path(p).name for p in self.images]
        return d


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of a folder: NIfTI files (``.nii``/``.nii.gz``) and sub-folders (DICOM series), sorted.

    Refuses a missing or empty folder with :class:`~medimg.errors.ConfigError`."""
    from medimg.io.load import list_images as listing

    root = Path(folder)
    if not root.is_dir():
        raise ConfigError("image folder not found", root)
    found = listing(root)
    if not found:
        raise ConfigError("no images here (expected .nii/.nii.gz files or DICOM series folders)", root)
    return found


def _image_modality(path: Path) -> str | None:
    """The modality an image declares: a NIfTI's ``descrip`` (medimg writes it) or a DICOM series' (0008,0060)."""
    from medimg.io import load
    from medimg.io.volume import is_nifti

    if is_nifti(path):
        import nibabel as nib

        header: Any = nib.load(path).header  # the header only: the voxels are read later, once
        descrip = bytes(np.asarray(header.get("descrip")).tobytes()).split(b"\0")[0]
        text = descrip.decode("ascii", "replace").strip()
        return text if text in {"CT", "MR", "PT", "NM"} else None
    return load(path).modality


def check_modality(trained: str, path: Path, original: torch.Tensor) -> None:
    """Refuse an image of another modality than the checkpoint's (``"CT"`` / ``"MR"``, from its preprocessing):
    by the modality the file declares, else -- for CT -- by the absence of air in Hounsfield units."""
    declared = _image_modality(path)
    if declared is not None and (declared == "CT") != (trained == "CT"):
        raise ConfigError(
            f"the image is {declared} but the model was trained on {trained}; adapt on {trained} images", path
        )
    if declared is None and trained == "CT" and float(original.min()) > CT_AIR_HU:
        raise ConfigError(
            f"the model was trained on CT but this image has no voxel below {CT_AIR_HU:.0f} HU (air is -1000 HU): "
            "not a CT in Hounsfield units",
            path,
        )


def _flip_back(task: Any, x: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.flip(task.infer(torch.flip(x, dims=(axis,))), dims=(axis,))


def proxy(task: Any, volumes: list[torch.Tensor]) -> Proxy:
    """The unlabelled proxy (:class:`Proxy`) of ``task`` on preprocessed volumes (C, X, Y, Z)."""
    from medimg.tasks.metrics import dice

    agreements, entropies, fractions = [], [], []
    with torch.no_grad():
        for vol in volumes:
            x = vol.unsqueeze(0).to(task.device)
            logits = task.infer(x)
            pred = logits.argmax(1)
            probs = logits.softmax(1)
            ent = -(probs * probs.clamp_min(1e-8).log()).sum(1)
            fore = pred > 0
            fractions.append(float(fore.float().mean()))
            for axis in (2, 3, 4):
                flipped = _flip_back(task, x, axis).argmax(1)
                fore = fore | (flipped > 0)
                agreements.append(dice(pred.cpu().numpy(), flipped.cpu().numpy()))
            entropies.append(float(ent[fore].mean()) if bool(fore.any()) else 0.0)
    return Proxy(float(np.mean(agreements)), float(np.mean(entropies)), float(np.mean(fractions)))


def _windows(
    task: Any, volumes: list[torch.Tensor], per_volume: int, pos_neg_ratio: float, seed: int
) -> Iterator[torch.Tensor]:
    """Windows of ``roi_size`` sampled like training does, with the model's own prediction as the label."""
    from monai import transforms as T

    roi = tuple(int(s) for s in task.hparams["roi_size"])
    crop = T.Compose(
        [
            T.SpatialPadd(keys=["image", "label"], spatial_size=roi),
            T.RandCropByPosNegLabeld(
                keys=["image", "label"],
                label_key="label",
                spatial_size=roi,
                pos=pos_neg_ratio,
                neg=1.0,
                num_samples=per_volume,
                image_key="image",
                image_threshold=float("-inf"),
            ),
        ]
    )
    crop.set_random_state(seed=seed)
    for vol in volumes:
        with torch.no_grad():
            pred = task.infer(vol.unsqueeze(0).to(task.device)).argmax(1).cpu()  # (1, X, Y, Z)
        for sample in crop({"image": vol, "label": pred.float()}):
            yield torch.as_tensor(sample["image"]).unsqueeze(0)


def _adabn(task: Any, windows: list[torch.Tensor], batch_size: int) -> None:
    bns = batch_norms(task.net)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every window, not an exponential one
    task.net.eval()
    for m in bns:
        m.train()
    try:
        with torch.no_grad():
            for i in range(0, len(windows), batch_size):
                task.net(torch.cat(windows[i : i + batch_size]).to(task.device))
    finally:
        for m, momentum in zip(bns, saved, strict=True):
            m.momentum = momentum
        task.net.eval()


def _tent(task: Any, windows: list[torch.Tensor], batch_size: int, steps: int, lr: float) -> None:
    if enable_instance_norm_affine(task):
        log.info("TENT: instance norms given an identity affine (scale 1, shift 0) to train")
    params = [p for m in norm_layers(task.net) for p in m.parameters(recurse=False)]
    if not params:
        raise ConfigError("the network's normalisation layers have no affine parameters: TENT has nothing to train")
    for p in task.net.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    task.net.eval()  # the statistics stay fixed: the adapted net predicts in eval mode exactly as trained here
    g = torch.Generator().manual_seed(0)
    try:
        for _ in range(steps):
            pick = torch.randperm(len(windows), generator=g)[:batch_size].tolist()
            logits = task.net(torch.cat([windows[i] for i in pick]).to(task.device))
            probs = logits.softmax(1)
            loss = -(probs * logits.log_softmax(1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in task.net.parameters():
            p.requires_grad_(True)
        task.net.eval()


def adapt(
    task: Any,
    images: list[Path],
    method: Literal["auto", "adabn", "tent", "adabn+tent"] = "auto",
    windows_per_image: int = 8,
    pos_neg_ratio: float = 1.0,
    batch_size: int = 4,
    tent_steps: int = 20,
    tent_lr: float = 1e-3,
    seed: int = 0,
) -> AdaptationReport:
    """Adapt ``task`` (a loaded :class:`~medimg.tasks.SegmentationTask`) in place to ``images``; return the report.

    Each image gets the checkpoint's preprocessing and is refused (one-line :class:`~medimg.errors.MedimgError`)
    when its channel count or its modality is not the model's. The task is changed even when the proxy got
    worse: the caller decides (see :func:`adapt_checkpoint`).
    """
    from medimg.inference.model import model_from_task
    from medimg.transforms.pipelines import Preprocessing

    method = pick_method(task.net, method)  # type: ignore[assignment]
    if "adabn" in method and not batch_norms(task.net):
        raise ConfigError(
            "the network has no batch-norm layers with running statistics: AdaBN has nothing to re-estimate "
            "(use --method tent)"
        )
    trained = Preprocessing.from_dict(task.hparams["preprocessing"]).modality
    volumes = []
    model = model_from_task(task)
    for path in images:
        original, data = model.prepare(path)
        check_modality(trained, path, original)
        volumes.append(torch.as_tensor(data).float())
    task.eval()
    before = proxy(task, volumes)
    windows = list(_windows(task, volumes, windows_per_image, pos_neg_ratio, seed))
    if "adabn" in method:
        _adabn(task, windows, batch_size)
    if "tent" in method:
        _tent(task, windows, batch_size, tent_steps, tent_lr)
    after = proxy(task, volumes)
    report = AdaptationReport(method, [str(p) for p in images], len(windows), before, after)
    report.images_digest = _digest(images)
    log.info("adaptation %s on %d image(s), %d windows: %s -> %s", method, len(images), len(windows), before, after)
    return report


def _digest(paths: list[Path]) -> str:
    """SHA-256 of the images' names and sizes (what the checkpoint was adapted on, without patient data)."""
    h = hashlib.sha256()
    for p in paths:
        size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        h.update(f"{p.name}:{size};".encode())
    return h.hexdigest()


def adapt_checkpoint(
    ckpt: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    method: Literal["auto", "adabn", "tent", "adabn+tent"] = "auto",
    device: str | None = None,
    **kwargs: Any,
) -> AdaptationReport:
    """Adapt a checkpoint to the images of ``images_dir`` and write ``out`` -- unless the proxy got worse, then
    raise :class:`AdaptationRefusedError` with the figures and write nothing.

    The written checkpoint is the input checkpoint with the adapted weights and an ``"adaptation"`` list (every
    adaptation it went through: method, image names, their digest, windows, the proxy before and after, the
    SHA-256 of the checkpoint it started from); :func:`medimg.inference.open_model` opens it as any other. The
    checkpoint file is read once.
    """
    import io

    from medimg.io.atomic import atomic_path
    from medimg.tasks.checkpoint import load_task_bytes

    images = list_images(images_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task, raw, digest = load_task_bytes(ckpt, dev)
    report = adapt(task, images, method, **kwargs)
    report.source_checkpoint_sha256 = digest
    if not report.improved:
        why = (
            "flip agreement fell"
            if report.after.flip_agreement < report.before.flip_agreement
            else "the predicted foreground collapsed"
        )
        raise AdaptationRefusedError(
            f"{report.method} made the unlabelled proxy worse ({why}) on {len(images)} image(s) "
            f"(before: {report.before}; after: {report.after}); {out} not written",
            images_dir,
        )
    checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {k: v.detach().cpu() for k, v in task.state_dict().items()}
    checkpoint["hyper_parameters"]["net_kwargs"] = task.hparams["net_kwargs"]  # affine instance norms, if TENT added
    checkpoint["adaptation"] = [*checkpoint.get("adaptation", []), report.as_record()]
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    return report
