"""``ClassificationTask``: any :func:`medimg.models.create_backbone` (2D/3D) with cross-entropy, AUROC, accuracy."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from medimg.models.backbones import create_backbone
from medimg.tasks.optim import adamw_cosine
from medimg.tasks.site_metrics import SiteRows, metric_key, site_gap, site_table

__all__ = ["ClassificationTask"]


class ClassificationTask(pl.LightningModule):
    """Image or volume classification.

    Batches are dicts with ``image`` (N, C, H, W[, D]) in [0, 1] and ``label`` (N,) class indices.

    Args:
        backbone_name / num_classes / in_channels / spatial_dims / weights / inflate_from_2d: see
            :func:`medimg.models.create_backbone`.
        lr / weight_decay: AdamW with a cosine schedule over ``trainer.max_epochs``.

    When the batches carry a ``site`` (the manifest's ``site`` column), validation also logs the accuracy of
    each site (``val/site_<S>/accuracy``) and the gap between the best and the worst (``val/site_gap_accuracy``).
    """

    checkpoint_metric = ("val/auroc", "max")

    def __init__(
        self,
        backbone_name: str = "resnet18",
        num_classes: int = 2,
        in_channels: int = 1,
        spatial_dims: int = 2,
        weights: str | None = None,
        inflate_from_2d: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = create_backbone(
            backbone_name,
            num_classes=num_classes,
            in_channels=in_channels,
            spatial_dims=spatial_dims,
            weights=weights,
            inflate_from_2d=inflate_from_2d,
        )
        from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

        self.val_auroc = MulticlassAUROC(num_classes=num_classes)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes)
        self._site_rows = SiteRows()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = torch.nn.functional.cross_entropy(logits, batch["label"].long().view(-1))
        self.log("train/loss", loss, prog_bar=True, on_epoch=True, batch_size=logits.shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        y = batch["label"].long().view(-1)
        self.log("val/loss", torch.nn.functional.cross_entropy(logits, y), sync_dist=True, batch_size=y.numel())
        probs = logits.softmax(-1)
        self.val_auroc.update(probs, y)
        self.val_acc.update(probs, y)
        # torchmetrics objects sync their states across DDP ranks at compute time
        self.log("val/auroc", self.val_auroc, on_epoch=True, prog_bar=True)
        self.log("val/accuracy", self.val_acc, on_epoch=True)
        if "site" in batch:
            sites: Any = batch["site"]
            correct = (probs.argmax(-1) == y).float().unsqueeze(1)  # (N, 1): one "class" column per case
            self._site_rows.add([sites] if isinstance(sites, str) else list(sites), {"accuracy": correct})

    def on_validation_epoch_end(self) -> None:
        rows = self._site_rows.gather()  # a collective under DDP: every rank calls it
        self._site_rows.reset()
        if not rows or self.trainer.sanity_checking:
            return
        table = site_table(rows, ("accuracy",))
        for row in table:
            self.log(metric_key("val", row["site"], "accuracy"), row["accuracy"], sync_dist=False)
        self.log("val/site_gap_accuracy", site_gap(table, "accuracy")[2], sync_dist=False)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        return adamw_cosine(self.parameters(), hp["lr"], hp["weight_decay"], self.trainer)
