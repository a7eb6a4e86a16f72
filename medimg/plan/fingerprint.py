"""The dataset fingerprint: what the planner needs to know about every training case, read once and cached.

Per case: shape and spacing in the RAS axis order training resamples into, the orientation codes it was stored
in, image channels, intensity percentiles inside the foreground (label > 0), voxels and connected components
per class. Over the whole dataset: the foreground intensities of each channel (a sample of up to
:data:`FOREGROUND_SAMPLES_PER_CASE` voxels per case, as nnU-Net's fingerprint extractor takes), whose 0.5 / 99.5
percentiles, mean and standard deviation become the CT normalisation.

The fingerprint is cached as ``<dataset>/.medimg_cache/fingerprint-<digest>.json``, keyed by the case list's
digest (file names and sizes), written atomically: two ranks that compute it at once both write the same
complete file and a reader never sees half of one.

Bad input is refused here, before any training, naming the case: a label on another voxel grid than its image,
label values that ``dataset.json`` does not declare, cases with different channel counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.data.datasets import Case, CaseList, case_name, case_paths, read_dataset, refuse_undeclared_labels
from medimg.errors import ConfigError
from medimg.io.atomic import atomic_write_text

__all__ = ["CaseFingerprint", "DatasetFingerprint", "fingerprint_case", "fingerprint_dataset"]

#: foreground voxels sampled per case for the dataset-wide intensity statistics (nnU-Net samples 10,000)
FOREGROUND_SAMPLES_PER_CASE = 10_000
#: the percentiles reported per case and over the dataset; 0.5 and 99.5 are nnU-Net's CT clipping bounds
PERCENTILES = (0.5, 50.0, 99.5)
#: bump when the fingerprint's content changes, so old caches are not read
FINGERPRINT_VERSION = 1
CACHE_DIR = ".medimg_cache"


@dataclass
class CaseFingerprint:
    """One training case. ``shape`` and ``spacing`` (mm) are in RAS axis order (after ``Orientationd("RAS")``);
    ``orientation`` is the axis codes as stored (e.g. ``"LPS"``)."""

    name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: str
    channels: int
    #: per channel: the :data:`PERCENTILES` of the image inside the foreground, then mean and std
    foreground_intensity: list[list[float]]
    #: voxels per class value (background included) and connected components per foreground class
    class_voxels: dict[int, int]
    class_components: dict[int, int]


@dataclass
class DatasetFingerprint:
    """All cases, plus the dataset-wide foreground intensity statistics per channel."""

    cases: list[CaseFingerprint]
    channel_names: dict[int, str]
    labels: dict[int, str]
    #: per channel: {"p0.5", "p50", "p99.5", "mean", "std"} over the foreground samples of every case
    foreground_intensity: list[dict[str, float]] = field(default_factory=list)
    digest: str = ""

    @property
    def spacings(self) -> npt.NDArray[np.float64]:
        return np.array([c.spacing for c in self.cases], dtype=np.float64)

    @property
    def shapes(self) -> npt.NDArray[np.float64]:
        return np.array([c.shape for c in self.cases], dtype=np.float64)

    @property
    def in_channels(self) -> int:
        return self.cases[0].channels

    @property
    def is_ct(self) -> bool:
        return len(self.channel_names) <= 1 and self.channel_names.get(0, "").strip().upper() == "CT"

    def to_json(self) -> str:
        d = asdict(self)
        d["version"] = FINGERPRINT_VERSION
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> DatasetFingerprint:
        d = json.loads(text)
        if d.pop("version", None) != FINGERPRINT_VERSION:
            raise ValueError("fingerprint version")
        cases = []
        for c in d.pop("cases"):
            c["shape"], c["spacing"] = tuple(c["shape"]), tuple(c["spacing"])
            c["class_voxels"] = {int(k): v for k, v in c["class_voxels"].items()}
            c["class_components"] = {int(k): v for k, v in c["class_components"].items()}
            cases.append(CaseFingerprint(**c))
        d["channel_names"] = {int(k): v for k, v in d["channel_names"].items()}
        d["labels"] = {int(k): v for k, v in d["labels"].items()}
        return cls(cases=cases, **d)


def _ras_order(affine: npt.NDArray[np.float64]) -> list[int]:
    """For each RAS axis, the array axis that ``Orientationd("RAS")`` moves there."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    order = [0, 0, 0]
    for array_axis, (ras_axis, _) in enumerate(ornt[:3]):
        order[int(ras_axis)] = array_axis
    return order


def _load_case(case: Case) -> tuple[npt.NDArray[np.float32], Any, npt.NDArray[np.int64]]:
    """(channels, i, j, k) image, its first Volume (geometry) and the label, checked to share one grid (the
    training loader's :func:`~medimg.transforms.pipelines.stack_channels`)."""
    from medimg.transforms.pipelines import stack_channels

    paths = case_paths(case["image"])
    image, first = stack_channels(paths)
    label, _ = stack_channels([case["label"]], grid=(str(paths[0]), first))
    if label.shape[0] != 1:
        raise ConfigError(f"the label has {label.shape[0]} volumes; a label map is one volume", case["label"])
    return image, first, np.rint(label[0]).astype(np.int64)


def fingerprint_case(
    case: Case, labels: dict[int, str], rng: np.random.Generator
) -> tuple[CaseFingerprint, list[npt.NDArray[np.float32]]]:
    """Fingerprint one case; also returns a sample of its foreground intensities per channel."""
    from scipy import ndimage

    name = case_name(case)
    image, vol, lab = _load_case(case)
    values = np.unique(lab)
    refuse_undeclared_labels(name, values.tolist(), labels, case["label"])
    order = _ras_order(vol.affine)
    shape = tuple(int(vol.shape[a]) for a in order)
    spacing = tuple(float(vol.spacing[a]) for a in order)
    fg = lab > 0
    stats, samples = [], []
    for channel in image:
        inside = channel[fg] if fg.any() else channel.ravel()
        pct = np.percentile(inside, PERCENTILES)
        stats.append([float(v) for v in pct] + [float(inside.mean()), float(inside.std())])
        take = min(FOREGROUND_SAMPLES_PER_CASE, inside.size)
        samples.append(rng.choice(inside, take, replace=False) if take < inside.size else inside)
    voxels = {int(v): int((lab == v).sum()) for v in values}
    components = {int(v): int(ndimage.label(lab == v)[1]) for v in values if v > 0}
    fp = CaseFingerprint(
        name=name,
        shape=shape,  # type: ignore[arg-type]
        spacing=spacing,  # type: ignore[arg-type]
        orientation=vol.orientation,
        channels=int(image.shape[0]),
        foreground_intensity=stats,
        class_voxels=voxels,
        class_components=components,
    )
    return fp, samples


def _dataset_intensity(samples: list[list[npt.NDArray[np.float32]]]) -> list[dict[str, float]]:
    out = []
    for c in range(len(samples[0])):
        pooled = np.concatenate([s[c] for s in samples])
        lo, mid, hi = (float(v) for v in np.percentile(pooled, PERCENTILES))
        out.append({"p0.5": lo, "p50": mid, "p99.5": hi, "mean": float(pooled.mean()), "std": float(pooled.std())})
    return out


def fingerprint_dataset(
    dataset_dir: str | os.PathLike[str], *, cases: CaseList | None = None, use_cache: bool = True
) -> DatasetFingerprint:
    """Fingerprint every training case of a dataset folder (MSD or nnU-Net v2 raw layout), cached on disk.

    Raises :class:`~medimg.errors.ConfigError` naming the first bad case (see the module docstring).
    """
    root = Path(dataset_dir)
    cases = cases or read_dataset(root)
    digest = cases.digest()
    cache = root / CACHE_DIR / f"fingerprint-{digest[:16]}.json"
    if use_cache and cache.is_file():
        try:
            return DatasetFingerprint.from_json(cache.read_text())
        except (ValueError, KeyError, TypeError):
            pass  # an older or damaged cache: compute it again
    rng = np.random.default_rng(0)
    fps: list[CaseFingerprint] = []
    samples: list[list[npt.NDArray[np.float32]]] = []
    for case in cases.training:
        fp, sample = fingerprint_case(case, cases.labels, rng)
        if fps and fp.channels != fps[0].channels:
            raise ConfigError(
                f"case {fp.name} has {fp.channels} image channel(s), case {fps[0].name} has {fps[0].channels}; "
                "every case needs the same channels",
                case_paths(case["image"])[0],
            )
        fps.append(fp)
        samples.append(sample)
    if cases.channel_names and fps[0].channels != cases.in_channels:
        raise ConfigError(
            f"case {fps[0].name} has {fps[0].channels} image channel(s) but dataset.json declares "
            f"{cases.in_channels} (channel_names / modality)",
            cases.spec,
        )
    names = cases.channel_names or {0: cases.modality}
    result = DatasetFingerprint(fps, names, dict(cases.labels), _dataset_intensity(samples), digest)
    if use_cache:
        atomic_write_text(cache, result.to_json())
    return result
