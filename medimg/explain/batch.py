"""Explanations for a whole worklist in one batch job (``medimg explain --cases CASES --out-dir DIR``).

Each case gets a folder ``DIR/<case_id>/`` with ``image.nii.gz``, ``heatmap.nii.gz``, ``prediction.nii.gz`` and
``explanation.json`` (method, layer, label, the checkpoint's and the input's SHA-256, the randomisation check).
``explanation.json`` is written last (atomically), so a folder without it is an unfinished case: running the
job again skips the finished cases of the same checkpoint and redoes the rest (resumable after a crash or a
cluster job's time limit). A reading session then opens a case by reading three small NIfTI files instead of
running the model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medimg.errors import MedimgError
from medimg.explain.api import Explanation
from medimg.explain.methods import DEFAULT_METHOD
from medimg.explain.sanity import SanityResult
from medimg.io.atomic import atomic_write_text
from medimg.io.volume import Volume, read_nifti

__all__ = ["BatchReport", "case_dir", "explain_cases", "load_explanation", "precomputed", "save_explanation"]

log = logging.getLogger(__name__)

EXPLANATION_JSON = "explanation.json"
_VOLUMES = ("image", "heatmap", "prediction")


@dataclass
class BatchReport:
    """What one run of the batch job did, per case id."""

    written: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # finished by an earlier run with the same checkpoint
    failed: dict[str, str] = field(default_factory=dict)  # case id -> one-line reason
    seconds: dict[str, float] = field(default_factory=dict)  # case id -> wall time of its explanation

    def summary(self) -> str:
        return f"{len(self.written)} explained, {len(self.reused)} already done, {len(self.failed)} failed"


def case_dir(out_dir: str | os.PathLike[str], case_id: str) -> Path:
    """``out_dir/case_id``; a case id that would leave ``out_dir`` (``/``, ``..``) is refused."""
    if not case_id or case_id in (".", "..") or "/" in case_id or os.sep in case_id:
        raise MedimgError(f"case id {case_id!r} cannot name a folder; use letters, digits, '-', '_' or '.'")
    return Path(out_dir) / case_id


def save_explanation(ex: Explanation, folder: str | os.PathLike[str]) -> Path:
    """Write ``ex`` into ``folder`` (volumes first, ``explanation.json`` last); returns the JSON's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in _VOLUMES:
        getattr(ex, name).save(folder / f"{name}.nii.gz")
    sanity = ex.sanity
    meta = {
        "label": ex.label,
        "label_name": ex.label_name,
        "method": ex.method,
        "layer": ex.layer,
        "checkpoint_sha256": ex.checkpoint_sha256,
        "input_sha256": ex.input_sha256,
        "image_meta": {k: v for k, v in ex.image.meta.items() if isinstance(v, (str, int, float))},
        "sanity": None if sanity is None else [sanity.correlation, sanity.threshold, sanity.n_randomised],
    }
    out = folder / EXPLANATION_JSON
    atomic_write_text(out, json.dumps(meta, indent=2))
    return out


def load_explanation(folder: str | os.PathLike[str]) -> Explanation:
    """Read what :func:`save_explanation` wrote."""
    folder = Path(folder)
    spec = folder / EXPLANATION_JSON
    try:
        meta = json.loads(spec.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MedimgError(f"precomputed explanation cannot be read ({exc}); run `medimg explain` again", spec) from exc
    vols = {name: read_nifti(folder / f"{name}.nii.gz") for name in _VOLUMES}
    image = Volume(vols["image"].array, vols["image"].affine, dict(meta.get("image_meta") or {}))
    sanity = meta.get("sanity")
    return Explanation(
        image=image,
        heatmap=Volume(vols["heatmap"].array, vols["heatmap"].affine, {"method": meta["method"]}),
        prediction=Volume(vols["prediction"].array, vols["prediction"].affine, {"modality": "SEG"}),
        label=int(meta["label"]),
        method=str(meta["method"]),
        layer=str(meta["layer"]),
        checkpoint_sha256=str(meta["checkpoint_sha256"]),
        input_sha256=str(meta["input_sha256"]),
        sanity=None if sanity is None else SanityResult(float(sanity[0]), float(sanity[1]), int(sanity[2])),
        label_name=meta.get("label_name"),
    )


def precomputed(
    out_dir: str | os.PathLike[str], case_id: str, checkpoint_sha256: str | None = None, method: str | None = None
) -> Explanation | None:
    """The finished explanation of ``case_id`` under ``out_dir``, or None when there is none for this
    checkpoint (and method, when given)."""
    folder = case_dir(out_dir, case_id)
    if not (folder / EXPLANATION_JSON).is_file():
        return None
    ex = load_explanation(folder)
    if checkpoint_sha256 is not None and ex.checkpoint_sha256 != checkpoint_sha256:
        return None
    if method is not None and ex.method != method:
        return None
    return ex


def explain_cases(
    ckpt: str | os.PathLike[str],
    cases: Iterable[tuple[str, str | os.PathLike[str]]],
    out_dir: str | os.PathLike[str],
    *,
    label: int = 1,
    method: str = DEFAULT_METHOD,
    layer: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> BatchReport:
    """Explain every ``(case_id, image)`` with :func:`medimg.explain.api.explain_case` into ``out_dir``,
    skipping the cases an earlier run finished with the same checkpoint and method. A case the model cannot
    read is recorded in the report's ``failed`` and the job goes on with the next one."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    from medimg.explain.api import explain_case
    from medimg.inference.model import open_model
    from medimg.inference.timings import peak_rss_bytes

    model = open_model(ckpt, device=device)  # read and hashed once for the whole worklist
    sha = model.sha256
    report = BatchReport()
    todo = list(cases)
    for case_id, image in tqdm(todo, desc="explain", unit="case", disable=not progress):
        folder = case_dir(out_dir, case_id)
        if precomputed(out_dir, case_id, sha, method) is not None:
            report.reused.append(case_id)
            continue
        t0 = time.perf_counter()
        try:
            ex = explain_case(model, image, label, method=method, layer=layer, device=device)
        except MedimgError as exc:
            report.failed[case_id] = str(exc)
            log.warning("explain: %s failed: %s", case_id, exc)
            continue
        save_explanation(ex, folder)
        report.written.append(case_id)
        report.seconds[case_id] = time.perf_counter() - t0
        log.info("explain: %s: %.2f s (read, explain, write); peak RSS %.2f GB", case_id, report.seconds[case_id],
                 peak_rss_bytes() / 2**30)  # fmt: skip
    return report
