"""``ClassificationTask``: any :func:`medimg.models.backbone` (2D or 3D) with cross-entropy, AUROC and accuracy."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from medimg.models.backbones import backbone

__all__ = ["ClassificationTask"]


class ClassificationTask(pl.LightningModule):
    """Image or volume classification.

    Batches are dicts with ``image`` (N, C, H, W[, D]) in [0, 1] and ``label`` (N,) class indices.

    Args:
        backbone_name / num_classes / in_channels / spatial_dims / weights / inflate_from_2d: see
            :func:`medimg.models.backbone`.
        lr / weight_decay: AdamW with a cosine schedule over ``trainer.max_epochs``.
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
        self.net = backbone(
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

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(self.trainer.max_epochs or 1), 1))
        return {"optimizer": opt, "lr_scheduler": sched}
