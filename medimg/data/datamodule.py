"""``SegmentationDataModule``: MSD folders or CSV manifests -> cached preprocessing -> random patches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from medimg.data.datasets import (
    CaseList,
    case_name,
    read_csv_manifest,
    read_dataset,
    refuse_undeclared_labels,
    split_cases,
)
from medimg.errors import ConfigError
from medimg.transforms.pipelines import (
    AUGMENTATION_PRESETS,
    FOREGROUND_SAMPLING,
    Preprocessing,
    augmentation,
    preprocessing,
)

__all__ = ["EpochSeededSampler", "SegmentationDataModule"]


class EpochSeededSampler(Sampler[int]):
    """Shuffles with ``seed + epoch`` and shards across DDP ranks.

    Lightning calls ``set_epoch`` before it creates each epoch's iterator (medimg's trainer defaults set
    ``use_distributed_sampler: false`` so this sampler is used as is under DDP). ``on_epoch`` is called there
    too: the data module re-seeds its random augmentation, so a run resumed at epoch e draws the same patches
    as an uninterrupted one. Each rank gets ``ceil(n / world)`` indices (the last ones wrap around).
    """

    def __init__(
        self, n: int, seed: int = 0, on_epoch: Callable[[int], None] | None = None, length: int | None = None
    ) -> None:
        self.n, self.seed, self.epoch, self.on_epoch = n, seed, 0, on_epoch
        self.length = length or n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def _rank_world(self) -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        rank, world = self._rank_world()
        per = -(-self.length // world)
        order: list[int] = []
        while len(order) < per * world:  # whole permutations, so every case is seen equally often
            order += torch.randperm(self.n, generator=g).tolist()
        return iter(order[: per * world][rank::world])

    def __len__(self) -> int:
        return -(-self.length // self._rank_world()[1])


class SegmentationDataModule(pl.LightningDataModule):
    """3D segmentation data in the Medical Segmentation Decathlon layout (or a CSV manifest).

    Deterministic preprocessing (:class:`~medimg.transforms.Preprocessing`) is computed once in
    ``prepare_data`` (one process per node under DDP) and cached to ``cache_dir`` with MONAI's
    ``PersistentDataset``; every rank then reads the cache in ``setup``. Random patch sampling and
    augmentation run per step, re-seeded per epoch so that a resumed run repeats an uninterrupted one.

    Args:
        dataset_dir: folder with a ``dataset.json``, in the MSD or the nnU-Net v2 raw layout (multi-channel
            cases become multi-channel inputs).
        manifest: CSV with ``image,label`` columns instead of ``dataset_dir`` (optional ``site``, ``patient``).
        cache_dir: where preprocessed cases go (default ``<dataset_dir>/.medimg_cache/<preprocessing hash>``).
        fold / num_folds: deterministic k-fold split of the training cases (``split_seed`` fixes it); grouped
            by ``patient`` when the cases carry one, so no patient is in training and validation at once.
        held_out_site: leave-one-site-out instead of k-fold: validate on every case of this site (the ``site``
            column / ``dataset.json`` field), train on the other sites.
        augment: ``"default"`` (flips, rotations, small intensity scale/shift) or ``"scanner_shift"`` (the
            default plus bias field, gamma, histogram shift, Gibbs ringing, blur/low resolution and noise with the
            ranges of the modality the intensity mode implies; see :func:`medimg.transforms.scanner_shift`).
        spacing, intensity, ct_window, ct_stats, crop_foreground, patch_size: see :class:`Preprocessing`.
        samples_per_volume: random patches drawn from each volume per step (RandCropByPosNegLabeld).
        pos_neg_ratio: foreground-centred to background-centred patches (0.5: a third of the patches are
            centred on foreground, nnU-Net's oversampling).
        foreground_sampling: where a foreground-centred patch is centred: ``"any"`` foreground voxel (MONAI's
            ``RandCropByPosNegLabeld``; a small class inside a large one is rarely the centre) or, by
            ``"classes"``, a voxel of a class drawn uniformly among the foreground classes the case holds
            (nnU-Net's rule, :class:`medimg.transforms.sampling.RandCropByClassesd`; ``medimg plan`` sets it).
        batch_size: volumes per batch (so ``batch_size * samples_per_volume`` patches).
        epoch_length: volumes drawn per epoch (default: the number of training cases); set it to decouple
            epochs from dataset size, as nnU-Net's 250 iterations per epoch do.
    """

    def __init__(
        self,
        dataset_dir: str | None = None,
        manifest: str | None = None,
        cache_dir: str | None = None,
        fold: int = 0,
        num_folds: int = 5,
        split_seed: int = 0,
        spacing: tuple[float, float, float] = (1.5, 1.5, 2.0),
        intensity: Literal["ct", "ct_zscore", "mr", "none"] = "ct",
        ct_window: tuple[float, float] = (-57.0, 164.0),
        ct_stats: tuple[float, float] = (0.0, 1.0),
        crop_foreground: bool = False,
        patch_size: tuple[int, int, int] = (96, 96, 96),
        samples_per_volume: int = 4,
        pos_neg_ratio: float = 1.0,
        foreground_sampling: Literal["any", "classes"] = "any",
        batch_size: int = 2,
        num_workers: int = 4,
        epoch_length: int | None = None,
        seed: int = 0,
        held_out_site: str | None = None,
        augment: Literal["default", "scanner_shift"] = "default",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if (dataset_dir is None) == (manifest is None):
            raise ConfigError("give exactly one of --data.dataset_dir (MSD folder) or --data.manifest (CSV)")
        if foreground_sampling not in FOREGROUND_SAMPLING:
            raise ConfigError(f"foreground_sampling must be one of {', '.join(FOREGROUND_SAMPLING)}, got "
                              f"{foreground_sampling!r}")  # fmt: skip
        if augment not in AUGMENTATION_PRESETS:
            raise ConfigError(f"augment must be one of {', '.join(AUGMENTATION_PRESETS)}, got {augment!r}")
        sp, win, patch, stats = tuple(spacing), tuple(ct_window), tuple(patch_size), tuple(ct_stats)
        self.preprocessing = Preprocessing(sp, intensity, win, crop_foreground, patch, stats)  # type: ignore[arg-type]
        self._cases: CaseList | None = None
        self.train_ds: Any = None
        self.val_ds: Any = None

    @property
    def hp(self) -> Any:
        """``self.hparams`` with attribute access typed as Any (the constructor arguments above)."""
        return self.hparams

    @property
    def cases(self) -> CaseList:
        if self._cases is None:
            hp = self.hp
            self._cases = read_dataset(hp.dataset_dir) if hp.dataset_dir else read_csv_manifest(hp.manifest)
        return self._cases

    @property
    def num_classes(self) -> int:
        return self.cases.num_classes

    @property
    def in_channels(self) -> int:
        return self.cases.in_channels

    @property
    def cache_path(self) -> Path:
        import hashlib
        import json

        if self.hp.cache_dir:
            base = Path(self.hp.cache_dir)
        else:
            src = Path(self.hp.dataset_dir or Path(self.hp.manifest).parent)
            base = src / ".medimg_cache"
        key = hashlib.sha256(json.dumps(self.preprocessing.as_dict(), sort_keys=True).encode()).hexdigest()[:12]
        return base / key

    def _dataset(self, items: list[dict[str, Any]]) -> Any:
        # MONAI's PersistentDataset with a lock per entry and atomic writes: ranks, nodes and jobs may start on
        # the same empty cache (see medimg.data.cache for what MONAI's own class lacks). The site travels with
        # each case into the batches (per-site metrics); the patient group is for splitting only and stays here.
        from medimg.data.cache import SharedPersistentDataset

        items = [{k: v for k, v in item.items() if k != "patient"} for item in items]
        return SharedPersistentDataset(items, transform=preprocessing(self.preprocessing), cache_dir=self.cache_path)

    def prepare_data(self) -> None:
        """Preprocess every training case once and cache it (runs in one process per node).

        Each case is checked on the way, before any training step: its label values must be classes that
        ``dataset.json`` declares and its channel count the same as the first case's (a label on another voxel
        grid than its image is refused when it is loaded). The error names the case.
        """
        self.cache_path.mkdir(parents=True, exist_ok=True)
        ds = self._dataset(self.cases.training)
        channels: int | None = None
        for i in range(len(ds)):
            item = ds[i]
            case = self.cases.training[i]
            channels = check_case(item, case, channels, self.cases.labels, self.cases.spec)

    def setup(self, stage: str | None = None) -> None:
        from monai.data import Dataset

        train_idx, val_idx = split_cases(
            self.cases.training, self.hp.num_folds, self.hp.fold, self.hp.split_seed, self.hp.held_out_site
        )
        cached = self._dataset(self.cases.training)
        self.augment = augmentation(
            self.hp.patch_size,
            self.hp.samples_per_volume,
            self.hp.pos_neg_ratio,
            1.0,
            image_threshold=self.preprocessing.background_threshold,
            preset=self.hp.augment,
            modality=self.preprocessing.modality,
            foreground_sampling=self.hp.foreground_sampling,
            num_classes=self.num_classes,
        )
        self.train_ds = Dataset(Subset(cached, train_idx), transform=self.augment)  # type: ignore[arg-type]
        self.val_ds = Subset(cached, val_idx)
        self._generator = torch.Generator()
        self.reseed(0)

    def reseed(self, epoch: int) -> None:
        """Re-seed the random augmentation and the workers' base seed for ``epoch`` (the sampler calls this)."""
        seed = (self.hp.seed + 7919 * epoch) % (2**31)
        self.augment.set_random_state(seed=seed)
        self._generator.manual_seed(seed)

    def train_dataloader(self) -> DataLoader[Any]:
        from monai.data import DataLoader as MonaiDataLoader
        from monai.data import list_data_collate

        # MONAI's DataLoader re-seeds the random transforms in each worker (worker seed = base seed + id, the
        # base seed drawn from `generator`, which `reseed` sets per epoch); plain torch workers would all
        # draw the same augmentation.
        loader: DataLoader[Any] = MonaiDataLoader(
            self.train_ds,
            batch_size=self.hp.batch_size,
            sampler=EpochSeededSampler(
                len(self.train_ds), self.hp.seed, on_epoch=self.reseed, length=self.hp.epoch_length
            ),
            num_workers=self.hp.num_workers,
            collate_fn=list_data_collate,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            generator=self._generator,
        )
        return loader

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_ds, batch_size=1, num_workers=min(self.hp.num_workers, 2))

    def manifest_digest(self) -> str:
        return self.cases.digest()


def check_case(
    item: dict[str, Any], case: dict[str, Any], channels: int | None, labels: dict[int, str], spec: Path | None
) -> int:
    """Refuse a preprocessed case whose label holds undeclared classes or whose channel count differs from
    ``channels`` (the first case's); returns its channel count."""
    name = case_name(case)
    n = int(item["image"].shape[0])
    if channels is not None and n != channels:
        raise ConfigError(f"case {name} has {n} image channel(s), the first case has {channels}", case["label"])
    refuse_undeclared_labels(name, torch.unique(item["label"]).tolist(), labels, case["label"])
    return n
