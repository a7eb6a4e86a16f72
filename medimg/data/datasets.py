"""Case lists: Medical Segmentation Decathlon and nnU-Net v2 raw ``dataset.json`` folders, CSV manifests; k-fold
splits (grouped by patient) and leave-one-site-out splits.

A case is a dict ``{"image": path, "label": path}``; a multi-channel case (nnU-Net v2's ``case_0000.nii.gz``,
``case_0001.nii.gz``, ...) has a list of paths under ``"image"``, one per channel, in channel order. A case may
also carry ``"site"`` (the scanner / centre it comes from: per-site metrics, leave-one-site-out) and
``"patient"`` (a pseudonymous group key: every scan of one patient falls in the same fold).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ConfigError

__all__ = [
    "GROUP_KEYS",
    "Case",
    "CaseList",
    "kfold_split",
    "leave_one_site_out",
    "read_csv_manifest",
    "read_csv_rows",
    "read_dataset",
    "read_msd",
    "read_nnunet_raw",
    "split_cases",
]

#: one case: ``image`` (a path, or a list of paths for a multi-channel image), ``label`` for training cases
Case = dict[str, Any]

#: the optional grouping fields of a case (CSV columns, ``dataset.json`` entries): never paths, never hashed as files
GROUP_KEYS = ("site", "patient")

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

    @property
    def sites(self) -> list[str]:
        """The distinct sites of the training cases, sorted (empty when no case names one)."""
        return sorted({str(c["site"]) for c in self.training if c.get("site")})

    def digest(self) -> str:
        """SHA-256 of the case list (paths relative to their root, file sizes, sites and patient groups): the
        dataset's fingerprint."""
        h = hashlib.sha256()
        for case in self.training + self.test:
            for key in sorted(case):
                if key in GROUP_KEYS:
                    h.update(f"{key}={case[key]};".encode())
                    continue
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
    meta = read_spec(root)
    if "file_ending" in meta and "training" not in meta:
        return read_nnunet_raw(root)
    return read_msd(root)


def read_spec(
    path: str | os.PathLike[str], layouts: str = "the Medical Segmentation Decathlon or the nnU-Net v2 raw"
) -> dict[str, Any]:
    """The ``dataset.json`` of a dataset folder (or the file itself) as a dict: the one reader of that file for
    the data modules, the reading session's worklist and the class names a checkpoint's dataset gives.

    Raises:
        ConfigError: no such file (naming the ``layouts`` expected), not JSON, not a JSON object.
    """
    given = Path(path)
    root, spec = (given.parent, given) if given.name == "dataset.json" else (given, given / "dataset.json")
    if not spec.is_file():
        raise ConfigError(f"no dataset.json here (expected {layouts} layout)", root)
    try:
        meta = json.loads(spec.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"dataset.json is not valid JSON ({exc})", spec) from exc
    if not isinstance(meta, dict):
        raise ConfigError("dataset.json must hold a JSON object", spec)
    return meta


def refuse_undeclared_labels(
    name: str, values: Iterable[int], labels: Mapping[int, str], where: str | os.PathLike[str]
) -> None:
    """Refuse a case whose label holds ``values`` that ``dataset.json``'s ``labels`` does not declare: the one
    check the data module (before any step) and the plan's fingerprint (before any sizing) share."""
    extra = sorted({int(v) for v in values} - set(labels))
    if extra:
        raise ConfigError(
            f"case {name}: label values {extra} are not classes in dataset.json's labels {sorted(labels)}; "
            "add them to 'labels' or fix the label file",
            where,
        )


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
    meta = read_spec(root)
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
    meta = read_spec(root, "the Medical Segmentation Decathlon")

    def resolve(rel: str) -> str:
        p = (root / rel).resolve()
        if not p.exists():
            raise ConfigError(f"dataset.json lists {rel!r}, which does not exist", spec)
        return str(p)

    training = [
        {"image": resolve(c["image"]), "label": resolve(c["label"]), **_groups(c)} for c in meta.get("training", [])
    ]
    test = [
        {"image": resolve(c)} if isinstance(c, str) else {"image": resolve(c["image"]), **_groups(c)}
        for c in meta.get("test", [])
    ]
    if not training:
        raise ConfigError("dataset.json has no training cases", spec)
    labels = {int(k): str(v) for k, v in (meta.get("labels") or {"0": "background", "1": "foreground"}).items()}
    channels = _channel_names(meta)
    return CaseList(training, test, labels, channels.get(0, ""), channels, spec)


def _groups(entry: dict[str, Any]) -> dict[str, str]:
    """The optional ``site`` / ``patient`` of a case entry (a CSV row or a ``dataset.json`` item), as strings."""
    return {k: str(entry[k]).strip() for k in GROUP_KEYS if entry.get(k) not in (None, "")}


def read_csv_rows(path: str | os.PathLike[str], required: tuple[str, ...] = ("image",)) -> list[dict[str, str]]:
    """The rows of a CSV manifest (the one reader of the segmentation and the classification manifests).

    ``image`` paths are resolved relative to the CSV's folder (what ``label`` holds, a path or a class, is the
    caller's to read); every value is a stripped string, ``site`` and ``patient`` included when present.
    Refuses a missing file, a missing ``required`` column and an empty manifest with
    :class:`~medimg.errors.ConfigError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError("manifest CSV not found", p)
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"manifest needs the column(s) {', '.join(repr(c) for c in missing)}", p)
        rows = []
        for row in reader:
            out = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not out["image"]:
                raise ConfigError(f"row {reader.line_num} has an empty 'image'", p)
            out["image"] = str((p.parent / out["image"]).resolve())
            rows.append(out)
    if not rows:
        raise ConfigError("manifest has no rows", p)
    return rows


def read_csv_manifest(path: str | os.PathLike[str]) -> CaseList:
    """Read a CSV with columns ``image`` and ``label`` (paths relative to the CSV, NIfTI files or DICOM folders),
    and optionally ``site`` (scanner / centre) and ``patient`` (pseudonymous id; grouped folds).

    Rows without a label are test images. An optional ``labels`` JSON next to it is not needed: the number of
    classes is read from the config (``num_classes``).
    """
    p = Path(path)
    training: list[Case] = []
    test: list[Case] = []
    for row in read_csv_rows(p, ("image",)):
        if row.get("label"):
            label = str((p.parent / row["label"]).resolve())
            training.append({"image": row["image"], "label": label, **_groups(row)})
        else:
            test.append({"image": row["image"], **_groups(row)})
    for case in training + test:
        for key in ("image", "label"):
            if key in case and not Path(case[key]).exists():
                raise ConfigError(f"manifest lists {case[key]}, which does not exist", p)
    if not training:
        raise ConfigError("manifest has no rows with a label", p)
    return CaseList(training, test)


def kfold_split(
    n: int, num_folds: int, fold: int, seed: int = 0, groups: list[str] | None = None
) -> tuple[list[int], list[int]]:
    """Deterministic k-fold split of ``range(n)``: (train indices, validation indices) of ``fold``.

    ``groups`` (one key per case, e.g. the patient) keeps every case of a group in the same fold, so a patient
    scanned twice is never in training and validation at once. Written by hand rather than scikit-learn's
    ``GroupKFold`` so that with one case per group the folds are exactly the ungrouped ones (the same seeded
    permutation, of groups instead of cases): adding a ``patient`` column to a manifest of distinct patients
    does not move any case.
    """
    if not 0 <= fold < num_folds:
        raise ConfigError(f"fold must be in [0, {num_folds}), got {fold}")
    if n < 2:
        raise ConfigError(f"need at least 2 labelled cases for a train/validation split, got {n}")
    keys = [str(i) for i in range(n)] if groups is None else [str(g) for g in groups]
    if len(keys) != n:
        raise ConfigError(f"internal: {len(keys)} group keys for {n} cases")
    distinct = list(dict.fromkeys(keys))  # first-seen order: deterministic for a given case list
    if len(distinct) < 2:
        raise ConfigError(f"need at least 2 patients (groups) for a train/validation split, got {len(distinct)}")
    order = np.random.default_rng(seed).permutation(len(distinct))
    folds = np.array_split(order, min(num_folds, len(distinct)))
    val_groups = {distinct[int(i)] for i in folds[fold % len(folds)]}
    val = [i for i in range(n) if keys[i] in val_groups]
    train = [i for i in range(n) if keys[i] not in val_groups]
    return train, val


def leave_one_site_out(sites: list[str], held_out: str) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): validate on every case of site ``held_out``, train on the others.

    Refused with :class:`~medimg.errors.ConfigError` when the cases name fewer than two sites or not that one.
    """
    names = sorted({s for s in sites if s})
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise ConfigError(
            f"leave-one-site-out needs cases from at least 2 sites; the 'site' column/field names {found}"
        )
    if held_out not in names:
        raise ConfigError(f"site {held_out!r} is not in the data (sites: {', '.join(names)})")
    if any(not s for s in sites):
        raise ConfigError(f"{sum(not s for s in sites)} case(s) have no site; leave-one-site-out needs one per case")
    val = [i for i, s in enumerate(sites) if s == held_out]
    return [i for i, s in enumerate(sites) if s != held_out], val


def split_cases(
    cases: list[Case], num_folds: int, fold: int, seed: int = 0, held_out_site: str | None = None
) -> tuple[list[int], list[int]]:
    """The split a data module uses: leave-one-site-out when ``held_out_site`` is given, else k-fold, grouped
    by ``patient`` when the cases carry one (a case without a patient is its own group)."""
    if held_out_site is not None:
        return leave_one_site_out([str(c.get("site") or "") for c in cases], held_out_site)
    groups = None
    if any(c.get("patient") for c in cases):
        groups = [str(c.get("patient") or f"\0case{i}") for i, c in enumerate(cases)]
    return kfold_split(len(cases), num_folds, fold, seed, groups)
