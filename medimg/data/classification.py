"""``ClassificationDataModule``: images or volumes listed in a CSV (``image,label``), for ClassificationTask."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from medimg.data.datasets import read_csv_rows, split_cases
from medimg.errors import ConfigError

__all__ = ["ClassificationDataModule"]


class ClassificationDataModule(pl.LightningDataModule):
    """Classification data from a CSV with ``image`` (NIfTI, DICOM file or folder) and ``label`` (integer) columns,
    and optionally ``site`` (per-site metrics, ``held_out_site`` for leave-one-site-out) and ``patient`` (folds
    grouped so that no patient is in training and validation at once).

    2D images (one slice) come out as (1, H, W), volumes as (1, H, W, D), resized to ``image_size`` and scaled
    to [0, 1] (CT: ``ct_window``; other modalities: 0.5-99.5 percentiles). Preprocessed cases are cached in
    memory (MONAI ``CacheDataset``); flips and small rotations are drawn per step.
    """

    def __init__(
        self,
        manifest: str,
        spatial_dims: int = 2,
        image_size: tuple[int, ...] = (224, 224),
        intensity: Literal["ct", "percentile"] = "percentile",
        ct_window: tuple[float, float] = (-1000.0, 1000.0),
        fold: int = 0,
        num_folds: int = 5,
        batch_size: int = 16,
        num_workers: int = 4,
        seed: int = 0,
        held_out_site: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(image_size) != spatial_dims:
            raise ConfigError(f"image_size {tuple(image_size)} does not have spatial_dims={spatial_dims} entries")
        self.train_ds: Any = None
        self.val_ds: Any = None

    @property
    def hp(self) -> Any:
        return self.hparams

    def _rows(self) -> list[dict[str, Any]]:
        rows = read_csv_rows(self.hp.manifest, ("image", "label"))
        out: list[dict[str, Any]] = []
        for i, r in enumerate(rows, start=2):  # line 1 is the header
            try:
                label = int(r["label"])
            except ValueError:
                raise ConfigError(f"row {i}: label {r['label']!r} is not a class index", self.hp.manifest) from None
            out.append({"image": r["image"], "label": label, **{k: r[k] for k in ("site", "patient") if k in r}})
        return out

    def _transforms(self, train: bool) -> Any:
        from monai import transforms as T

        from medimg.transforms.pipelines import LoadVolumed, classification_input_steps

        steps: list[Any] = [LoadVolumed(["image"])]
        steps += classification_input_steps(
            self.hp.spatial_dims, self.hp.image_size, self.hp.intensity, self.hp.ct_window
        )
        if train:
            steps += [
                T.RandFlipd(keys="image", prob=0.5, spatial_axis=0),
                T.RandRotated(keys="image", range_x=0.1, prob=0.3, keep_size=True),
            ]
        return T.Compose(steps)

    def setup(self, stage: str | None = None) -> None:
        from monai.data import CacheDataset

        rows = self._rows()
        train_idx, val_idx = split_cases(rows, self.hp.num_folds, self.hp.fold, self.hp.seed, self.hp.held_out_site)
        # the site travels into the batches (per-site metrics); the patient group is for the split only
        rows = [{k: v for k, v in r.items() if k != "patient"} for r in rows]
        self.train_ds = CacheDataset([rows[i] for i in train_idx], self._transforms(True), progress=False)
        self.val_ds = CacheDataset([rows[i] for i in val_idx], self._transforms(False), progress=False)

    def train_dataloader(self) -> DataLoader[Any]:
        from monai.data import DataLoader as MonaiDataLoader

        loader: DataLoader[Any] = MonaiDataLoader(
            self.train_ds, batch_size=self.hp.batch_size, shuffle=True, num_workers=self.hp.num_workers
        )
        return loader

    def val_dataloader(self) -> DataLoader[Any]:
        from monai.data import DataLoader as MonaiDataLoader

        loader: DataLoader[Any] = MonaiDataLoader(self.val_ds, batch_size=self.hp.batch_size, num_workers=0)
        return loader
