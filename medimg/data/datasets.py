"""Case lists: Medical Segmentation Decathlon and nnU-Net v2 raw ``dataset.json`` folders, CSV manifests; k-fold
splits.

A case is a dict ``{"image": path, "label": path}``; a multi-channel case (nnU-Net v2's ``case_0000.nii.gz``,
``case_0001.nii.gz``, ...) has a list of paths under ``"image"``, one per channel, in channel order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ConfigError

__all__ = ["Case", "CaseList", "kfold_split", "read_csv_manifest", "read_dataset", "read_msd", "read_nnunet_raw"]

#: one case: ``image`` (a path, or a list of paths for a multi-channel image), ``label`` for training cases
Case = dict[str, Any]

#: the digits of nnU-Net v2's channel suffix: ``case_0000.nii.gz`` is channel 0 of ``case``
NNUNET_CHANNEL_DIGITS = 4


@dataclass
class CaseList:
    """Training cases (image + label paths), unlabelled test images, and the label names."""

    training: list[Case]
    test: list[Case] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=lambda: {0: "background", 1: "foreground"})
    modality: str = ""
    channel_names: dict[int, str] = field(default_factory=dict)
    spec: Path | None = None

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    @property
    def in_channels(self) -> int:
        """Image channels the dataset declares (``channel_names`` / ``modality``); 1 when it says nothing."""
        return max(len(self.channel_names), 1)

    def digest(self) -> str:
        """SHA-256 of the case list (paths relative to their root, file sizes): the dataset's fingerprint."""
        h = hashlib.sha256()
        for case in self.training + self.test:
            for key in sorted(case):
                for p in map(Path, case_paths(case[key])):
                    size = (
                        p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                    )
                    h.update(f"{key}={p.name}:{size};".encode())
        return h.hexdigest()


def case_paths(value: str | list[str]) -> list[str]:
    """The file(s) of one case entry: a single path, or the per-channel paths of a multi-channel image."""
    return [value] if isinstance(value, str) else list(value)


def case_name(case: Case) -> str:
    """A short name for messages: the image file name without its suffixes (the first channel's)."""
    first = Path(case_paths(case["image"])[0])
    name = first.name.split(".")[0]
    return name


def read_dataset(dataset_dir: str | os.PathLike[str]) -> CaseList:
    """Read a dataset folder in whichever layout its ``dataset.json`` is written: nnU-Net v2 raw (it has
    ``channel_names`` and ``file_ending``) or the Medical Segmentation Decathlon (a ``training`` list)."""
    root = Path(dataset_dir)
    meta = _read_spec(root)
    if "file_ending" in meta and "training" not in meta:
        return read_nnunet_raw(root)
    return read_msd(root)


def _read_spec(root: Path) -> dict[str, Any]:
    spec = root / "dataset.json"
    if not spec.is_file():
        raise ConfigError(
            "no dataset.json here (expected the Medical Segmentation Decathlon or the nnU-Net v2 raw layout)", root
        )
    try:
        meta = json.loads(spec.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"dataset.json is not valid JSON ({exc})", spec) from exc
    if not isinstance(meta, dict):
        raise ConfigError("dataset.json must hold a JSON object", spec)
    return meta


def _channel_names(meta: dict[str, Any]) -> dict[int, str]:
    names = meta.get("channel_names") or meta.get("modality") or {}
    if isinstance(names, str):
        return {0: names}
    return {int(k): str(v) for k, v in names.items()}


def read_nnunet_raw(dataset_dir: str | os.PathLike[str]) -> CaseList:
    """Read a folder in nnU-Net v2's raw layout, as it is.

    ``dataset.json`` holds ``channel_names`` ({"0": "CT"}), ``labels`` ({"background": 0, "organ": 1}) and
    ``file_ending`` (".nii.gz"); ``imagesTr/CASE_XXXX<file_ending>`` is channel ``XXXX`` of ``CASE`` and
    ``labelsTr/CASE<file_ending>`` its label. ``imagesTs`` (optional) holds unlabelled cases in the same naming.
    Region-based labels (a list of values per name) are refused: medimg trains one class per value.
    """
    root = Path(dataset_dir)
    meta = _read_spec(root)
    spec = root / "dataset.json"
    ending = str(meta.get("file_ending", ".nii.gz"))
    channels = _channel_names(meta)
    if not channels:
        raise ConfigError("dataset.json has no channel_names (nnU-Net v2 layout)", spec)
    labels: dict[int, str] = {}
    for name, value in (meta.get("labels") or {"background": 0, "foreground": 1}).items():
        if not isinstance(value, int):
            raise ConfigError(
                f"label {name!r} is a region ({value}); medimg needs one integer per class in 'labels'", spec
            )
        labels[value] = str(name)
    if 0 not in labels:
        raise ConfigError("'labels' must name the background as 0", spec)

    def images_of(folder: Path) -> dict[str, list[str]]:
        found: dict[str, dict[int, str]] = {}
        if not folder.is_dir():
            return {}
        for p in sorted(folder.glob(f"*{ending}")):
            stem = p.name[: -len(ending)]
            case, sep, digits = stem.rpartition("_")
            if not sep or len(digits) != NNUNET_CHANNEL_DIGITS or not digits.isdigit():
                raise ConfigError(f"image file name without the _XXXX channel suffix (expected {stem}_0000{ending})", p)
            found.setdefault(case, {})[int(digits)] = str(p.resolve())
        out = {}
        for case, chans in found.items():
            if sorted(chans) != list(range(len(channels))):
                raise ConfigError(
                    f"case {case} has channels {sorted(chans)} but dataset.json declares {len(channels)} "
                    f"(channel_names); every case needs one file per channel",
                    folder,
                )
            out[case] = [chans[c] for c in range(len(channels))]
        return out

    training: list[Case] = []
    for case, paths in images_of(root / "imagesTr").items():
        label = root / "labelsTr" / f"{case}{ending}"
        if not label.is_file():
            raise ConfigError(f"case {case} has no label (expected labelsTr/{case}{ending})", root)
        training.append({"image": paths if len(paths) > 1 else paths[0], "label": str(label.resolve())})
    test: list[Case] = [{"image": p if len(p) > 1 else p[0]} for p in images_of(root / "imagesTs").values()]
    if not training:
        raise ConfigError(f"no training cases in imagesTr (files named CASE_0000{ending})", root)
    mod = channels.get(0, "")
    return CaseList(training, test, labels, mod, channels, spec)


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
    channels = _channel_names(meta)
    return CaseList(training, test, labels, channels.get(0, ""), channels, spec)


def read_csv_manifest(path: str | os.PathLike[str]) -> CaseList:
    """Read a CSV with columns ``image`` and ``label`` (paths relative to the CSV, NIfTI files or DICOM folders).

    Rows without a label are test images. An optional ``labels`` JSON next to it is not needed: the number of
    classes is read from the config (``num_classes``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError("manifest CSV not found", p)
    training: list[Case] = []
    test: list[Case] = []
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
