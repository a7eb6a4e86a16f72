"""``SegmentationTask``: a MONAI segmentation net trained with Lightning (Dice+CE, sliding-window validation).

Precision and scale are Trainer flags only (``precision="bf16-mixed"``, ``strategy="ddp"``): there is no
hand-written GradScaler or process-group code here.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from medimg.errors import MedimgError
from medimg.metrics import DEFAULT_NSD_TOLERANCE_MM, VALIDATION_METRICS
from medimg.models import eval_mode
from medimg.models.segmentation import segmentation_net
from medimg.tasks.optim import adamw_cosine
from medimg.tasks.site_metrics import (
    NO_SITE,
    SiteRows,
    grid_spacings,
    metric_key,
    score_batch,
    site_gap,
    site_table,
    write_site_report,
)

__all__ = ["NonFiniteLossError", "SegmentationTask"]

log = logging.getLogger(__name__)


class NonFiniteLossError(MedimgError):
    """Too many consecutive steps with a NaN/inf loss: the run diverged."""


class SegmentationTask(pl.LightningModule):
    """3D segmentation with Dice + cross-entropy, validated by sliding-window inference on whole volumes.

    Args:
        net: ``unet`` | ``dynunet`` | ``segresnet`` | ``swinunetr`` (see :func:`medimg.models.segmentation_net`).
        net_kwargs: keyword arguments for that network (channels, strides, filters, ...).
        num_classes: output channels including background.
        in_channels: image channels.
        lr / weight_decay: AdamW; the learning rate follows a cosine schedule over ``trainer.max_epochs`` (with a
            ``trainer.max_time``: the peak rate, then a cosine over the last fifth; see :mod:`medimg.tasks.optim`).
        roi_size / sw_batch_size / sw_overlap: sliding-window inference for validation, test and prediction.
        deep_supervision: train DynUNet's extra heads (``net_kwargs`` gets ``deep_supervision=True``).
        max_nonfinite: a NaN/inf loss skips the optimiser step with a warning (on every rank at once);
            after this many in a row the run stops with :class:`NonFiniteLossError`.
        preprocessing: filled in by the CLI/data module so the checkpoint carries the preprocessing that
            ``medimg segment`` must repeat.
        labels: class names by value, filled in from the data module the same way (a constructor argument so
            that ``medimg validate --ckpt_path`` and ``load_from_checkpoint`` take them back).
        nsd_tolerance_mm: the tolerance of the logged NSD (surface Dice), in mm.

    Validation and test score every case with :mod:`medimg.metrics`, one entry of
    :data:`~medimg.metrics.VALIDATION_METRICS` each: per class ``val/dice_class<c>``, ``val/hd95_mm_class<c>``
    and ``val/nsd_class<c>``, and ``val/dice`` (the mean over classes). They are computed on the **preprocessed
    grid** the network sees (the data module's ``spacing``, default 1.5 x 1.5 x 2.0 mm, or the plan's; read from
    the image's affine), in mm, with medimg's empty-mask policy: a missed class has HD95 = the image diagonal, so
    the mean gets worse when the model misses, never better (MONAI's ``HausdorffDistanceMetric`` gives NaN there,
    which its mean drops). ``medimg evaluate`` scores on the label's own grid instead.

    When the batches carry a ``site`` (the data's ``site`` column / field), validation and test also report each
    metric per site and class (``val/site_<S>/dice_class<c>``), the gap between the best and the worst site
    (``val/site_gap_dice``, ``val/site_gap_hd95_mm``, ``val/site_gap_nsd``), and write ``per_site_val.csv`` /
    ``per_site_val.png`` (one line per site) into the run's log folder.
    """

    #: the metric that picks the best checkpoint, and its direction
    checkpoint_metric = ("val/dice", "max")

    def __init__(
        self,
        net: str = "unet",
        net_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        roi_size: tuple[int, int, int] = (96, 96, 96),
        sw_batch_size: int = 4,
        sw_overlap: float = 0.25,
        deep_supervision: bool = False,
        max_nonfinite: int = 10,
        preprocessing: dict[str, Any] | None = None,
        labels: dict[int, str] | None = None,
        nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(net_kwargs or {})
        if deep_supervision:
            if net != "dynunet":
                raise MedimgError("deep_supervision needs net='dynunet'")
            kwargs["deep_supervision"] = True
        self.net = segmentation_net(net, in_channels=in_channels, out_channels=num_classes, **kwargs)
        from monai.losses import DeepSupervisionLoss, DiceCELoss

        self.loss_fn: torch.nn.Module = DiceCELoss(to_onehot_y=True, softmax=True)
        if deep_supervision:
            self.loss_fn = DeepSupervisionLoss(self.loss_fn)
        self._nonfinite_in_a_row = 0
        self._skip_step = False
        self._site_rows = SiteRows()  # every validation / test case's scores, with its site (or NO_SITE)
        self._site_history: dict[str, list[dict[str, Any]]] = {"val": [], "test": []}

    @property
    def hp(self) -> Any:
        return self.hparams

    def setup(self, stage: str) -> None:
        """Take the data module's preprocessing and class names into the hyper-parameters (so checkpoints carry
        them) and check that the data has as many classes and channels as the network."""
        from medimg.errors import ConfigError

        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        prep = getattr(dm, "preprocessing", None)
        if prep is not None:
            self.hparams["preprocessing"] = prep.as_dict()
        cases = getattr(dm, "cases", None)
        if cases is not None:  # class names travel with the checkpoint (DICOM SEG segment labels, reports)
            self.hparams["labels"] = {int(k): str(v) for k, v in cases.labels.items()}
        n = getattr(dm, "num_classes", None)
        if n is not None and n != self.hp.num_classes:
            raise ConfigError(
                f"the dataset has {n} classes (labels in dataset.json) but model.num_classes is "
                f"{self.hp.num_classes}; set --model.num_classes {n}"
            )
        c = getattr(dm, "in_channels", None)
        if c is not None and c != self.hp.in_channels:
            raise ConfigError(
                f"the dataset has {c} image channel(s) (channel_names / modality in dataset.json) but "
                f"model.in_channels is {self.hp.in_channels}; set --model.in_channels {c}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def infer(self, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Sliding-window logits for whole volumes (N, C, H, W, D), windows of ``roi_size``."""
        from monai.inferers import sliding_window_inference

        with eval_mode(self.net):
            out = sliding_window_inference(
                x,
                roi_size=self.hp.roi_size,
                sw_batch_size=self.hp.sw_batch_size,
                predictor=self.net,
                overlap=self.hp.sw_overlap,
                mode="gaussian",
                progress=progress,
            )
        return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)

    def compute_loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.hp.deep_supervision and logits.ndim == label.ndim + 1:
            logits = list(torch.unbind(logits, dim=1))  # type: ignore[assignment]
        loss: torch.Tensor = self.loss_fn(logits, label)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch["image"], batch["label"]
        loss = self.compute_loss(self(x), y)
        # every rank must agree to skip, or DDP's gradient all-reduce would hang
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss).item()), all=True)
        if finite:
            self._nonfinite_in_a_row = 0
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
            return loss
        self._nonfinite_in_a_row += 1
        log.warning(
            "non-finite loss at step %d (epoch %d); optimiser step skipped (%d in a row, limit %d)",
            self.global_step,
            self.current_epoch,
            self._nonfinite_in_a_row,
            self.hp.max_nonfinite,
        )
        if self._nonfinite_in_a_row >= self.hp.max_nonfinite:
            raise NonFiniteLossError(
                f"{self._nonfinite_in_a_row} consecutive non-finite losses: lower the learning rate, "
                "try precision=bf16-mixed instead of 16-mixed, or check the data"
            )
        self._skip_step = True
        # a zero loss connected to every parameter: backward (and DDP's all-reduce) run as usual, with zero grads
        return sum((p.sum() * 0.0 for p in self.parameters() if p.requires_grad), torch.zeros((), device=x.device))

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Run forward/backward, then step -- unless the loss was non-finite, then drop the gradients instead.

        Returning ``None`` from ``training_step`` would skip the step too, but Lightning does not support that
        under DDP; dropping the gradients (``grad = None``) makes the optimiser leave every parameter, its
        momentum and its weight decay untouched.
        """
        result = optimizer_closure() if optimizer_closure is not None else None
        if self._skip_step:
            self._skip_step = False
            optimizer.zero_grad(set_to_none=True)
            return
        optimizer.step(closure=lambda: result)

    def _evaluate(self, batch: dict[str, Any]) -> torch.Tensor:
        x, y = batch["image"], batch["label"]
        logits = self.infer(x)
        loss = self.compute_loss(logits, y)
        n = x.shape[0]
        prep = self.hparams.get("preprocessing") or {}
        spacings = grid_spacings(x, n, prep.get("spacing"))
        pred, truth = torch.argmax(logits, dim=1), y[:, 0].long()
        # {metric: (N, classes - 1)}: this batch's cases, kept with their sites for the epoch's means
        scores = score_batch(pred, truth, spacings, self.hp.num_classes, self.hp.nsd_tolerance_mm)
        sites = batch.get("site", [NO_SITE] * n)
        self._site_rows.add([sites] if isinstance(sites, str) else list(sites), scores)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self._evaluate(batch)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=1)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self._evaluate(batch)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=1)

    def _log_metrics(self, prefix: str) -> None:
        """The epoch's means over every rank's cases of each :data:`VALIDATION_METRICS` entry, per class."""
        rows = self._site_rows.gather()  # a collective under DDP: every rank calls it, every rank logs the same
        self._site_rows.reset()
        if not rows:
            return
        for spec in VALIDATION_METRICS:
            means = torch.tensor([row[spec.name] for row in rows], dtype=torch.float64).mean(dim=0)
            for c, value in enumerate(means.tolist(), start=1):
                self.log(f"{prefix}/{spec.name}_class{c}", value, sync_dist=False)
            if spec.name == "dice":
                self.log(f"{prefix}/dice", means.mean().item(), prog_bar=True, sync_dist=False)
        self._log_site_metrics(prefix, rows)

    def _log_site_metrics(self, prefix: str, rows: list[dict[str, Any]]) -> None:
        """Per-site scores per class, the best-worst gap, and the CSV + plot (see the class docstring)."""
        if all(row["site"] == NO_SITE for row in rows) or self.trainer.sanity_checking:
            return
        from medimg.tasks.callbacks import run_dir

        names = {int(k): str(v) for k, v in (self.hparams.get("labels") or {}).items()}
        metrics = [spec.name for spec in VALIDATION_METRICS]
        table = site_table(rows, metrics, names)
        for row in table:
            for metric in metrics:
                key = metric_key(prefix, row["site"], f"{metric}_class{row['class_index']}")
                self.log(key, row[metric], sync_dist=False)
        for spec in VALIDATION_METRICS:
            gap = site_gap(table, spec.name, higher_is_better=spec.higher_is_better)[2]
            self.log(f"{prefix}/site_gap_{spec.name}", gap, sync_dist=False)
        best, worst, gap = site_gap(table, "dice")
        folder = run_dir(self.trainer)  # a collective under DDP too
        if self.trainer.global_rank != 0:
            return
        log.info(
            "%s Dice per site: %s; best %s, worst %s, gap %.3f",
            prefix,
            ", ".join(f"{r['site']}/{r['class']} {r['dice']:.3f} ({r['cases']} cases)" for r in table),
            best,
            worst,
            gap,
        )
        history = self._site_history[prefix]
        history += [{"epoch": self.current_epoch, **row} for row in table]
        write_site_report(history, folder, f"per_site_{prefix}", metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_optimizers(self) -> Any:
        return adamw_cosine(self.parameters(), self.hp.lr, self.hp.weight_decay, self.trainer)
