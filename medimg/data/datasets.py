"""Case lists: Medical Segmentation Decathlon ``dataset.json`` folders and CSV manifests; k-fold splits."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medimg.errors import ConfigError

__all__ = ["CaseList", "kfold_split", "read_csv_manifest", "read_msd"]


@dataclass
class CaseList:
    """Training cases (image + label paths), unlabelled test images, and the label names."""

    training: list[dict[str, str]]
    test: list[dict[str, str]] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=lambda: {0: "background", 1: "foreground"})
    modality: str = ""

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    def digest(self) -> str:
        """SHA-256 of the case list (paths relative to their root, file sizes): the dataset's fingerprint."""
        h = hashlib.sha256()
        for case in self.training + self.test:
            for key in sorted(case):
                p = Path(case[key])
                size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                h.update(f"{key}={p.name}:{size};".encode())
        return h.hexdigest()


def read_msd(dataset_dir: str | os.PathLike[str]) -> CaseList:
    """Read an MSD-layout folder: ``dataset.json`` with ``training`` [{image, label}] and ``test`` lists."""
    root = Path(dataset_dir)
    spec = root / "dataset.json"
    if not spec.is_file():
        raise ConfigError("no dataset.json here (expected the Medical Segmentation Decathlon layout)", root)
    try:
        meta = json.loads(spec.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"dataset.json is not valid JSON ({exc})", spec) from exc

    def resolve(rel: str) -> str:
        p = (root / rel).resolve()
        if not p.exists():
            raise ConfigError(f"dataset.json lists {rel!r}, which does not exist", spec)
        return str(p)

    training = [{"image": resolve(c["image"]), "label": resolve(c["label"])} for c in meta.get("training", [])]
    test = [{"image": resolve(c if isinstance(c, str) else c["image"])} for c in meta.get("test", [])]
    if not training:
        raise ConfigError("dataset.json has no training cases", spec)
    labels = {int(k): str(v) for k, v in (meta.get("labels") or {"0": "background", "1": "foreground"}).items()}
    modality = meta.get("modality", {})
    mod = str(modality.get("0", "")) if isinstance(modality, dict) else str(modality)
    return CaseList(training, test, labels, mod)


def read_csv_manifest(path: str | os.PathLike[str]) -> CaseList:
    """Read a CSV with columns ``image`` and ``label`` (paths relative to the CSV, NIfTI files or DICOM folders).

    Rows without a label are test images. An optional ``labels`` JSON next to it is not needed: the number of
    classes is read from the config (``num_classes``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError("manifest CSV not found", p)
    training, test = [], []
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            raise ConfigError("manifest needs an 'image' column (and 'label' for training rows)", p)
        for row in reader:
            image = str((p.parent / row["image"]).resolve())
            if row.get("label"):
                training.append({"image": image, "label": str((p.parent / row["label"]).resolve())})
            else:
                test.append({"image": image})
    for case in training + test:
        for value in case.values():
            if not Path(value).exists():
                raise ConfigError(f"manifest lists {value}, which does not exist", p)
    if not training:
        raise ConfigError("manifest has no rows with a label", p)
    return CaseList(training, test)


def kfold_split(n: int, num_folds: int, fold: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic k-fold split of ``range(n)``: (train indices, validation indices) of ``fold``."""
    if not 0 <= fold < num_folds:
        raise ConfigError(f"fold must be in [0, {num_folds}), got {fold}")
    if n < 2:
        raise ConfigError(f"need at least 2 labelled cases for a train/validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(order, min(num_folds, n))
    val = sorted(int(i) for i in folds[fold % len(folds)])
    train = sorted(int(i) for i in order if i not in set(val))
    return train, val
