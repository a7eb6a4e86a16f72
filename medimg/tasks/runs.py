"""Training runs side by side: one row per run found under a folder (what ``medimg runs`` prints).

A run is a ``lightning_logs/version_N`` folder (what ``medimg fit`` writes: ``metrics.csv``, ``config.yaml``,
``fingerprint.json``, ``run.json``). Each row holds where the run came from (date, git commit, dataset digest),
how its configuration differs from a baseline run (the keys of the flattened ``config.yaml`` whose values
differ, the baseline being the oldest run unless named), its validation scores (``val/dice`` best and last; the
means over classes of ``val/hd95_mm_class*`` and ``val/nsd_class*`` at the last epoch, where logged), and its
cost and ending from ``run.json`` (:mod:`medimg.tasks.run_record`).

What cannot be read (a damaged ``metrics.csv``, a run from an older medimg without ``run.json``, no config) is
a note on the row, never an error: a table of twenty runs should not fail on one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError, MedimgError
from medimg.io.atomic import atomic_write_text
from medimg.tasks.run_record import RUN_RECORD

__all__ = ["IGNORED_KEYS", "RunRow", "RunTable", "config_diff", "flatten", "read_epoch_metrics", "table"]

#: Config keys left out of the diff: they differ between any two runs and say nothing about the experiment.
IGNORED_KEYS = frozenset({"trainer.default_root_dir", "ckpt_path", "config"})
#: LightningCLI's nesting of a class's arguments (``model: {class_path: ..., init_args: {...}}``).
INIT_ARGS = "init_args"
#: The score the rows are compared by (higher is better).
DICE = "val/dice"
HD95_PREFIX, NSD_PREFIX = "val/hd95_mm_class", "val/nsd_class"


@dataclass
class RunRow:
    """One run. Numbers are ``None`` where the run did not record them; ``notes`` say why."""

    name: str
    path: Path
    date: str | None = None
    commit: str | None = None
    dataset_digest: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    diff: dict[str, Any] = field(default_factory=dict)
    dice_best: float | None = None
    dice_best_epoch: int | None = None
    dice_last: float | None = None
    hd95_mm_last: float | None = None
    nsd_last: float | None = None
    epochs: int | None = None
    wall_s: float | None = None
    device_hours: float | None = None
    device_kind: str | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    attempts: int | None = None
    status: str = "unknown"
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The row as flat cells (for CSV and a pandas DataFrame): diff as ``key=value; ...``."""
        cells = {k: v for k, v in asdict(self).items() if k not in ("config", "diff", "notes", "path")}
        cells["diff"] = diff_text(self.diff)
        cells["notes"] = "; ".join(self.notes)
        cells["path"] = str(self.path)
        return cells


@dataclass
class RunTable:
    """The rows (oldest first), the baseline's name, and notes about the folder as a whole."""

    root: Path
    rows: list[RunRow]
    baseline: str | None
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [r.record() for r in self.rows]

    def write_csv(self, dest: str | os.PathLike[str]) -> None:
        """All rows as CSV, written atomically."""
        import io

        buf = io.StringIO()
        fields = list(RunRow(name="", path=Path()).record())
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records())
        atomic_write_text(dest, buf.getvalue())


def diff_text(diff: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(diff.items()))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"init_args": {"lr": 0.01}}}`` -> ``{"model.lr": 0.01}``; lists stay values.

    LightningCLI's ``init_args`` level is left out of the names: they read as typed (``--model.lr``).
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == INIT_ARGS and isinstance(value, Mapping):
            flat.update(flatten(value, prefix))
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


#: Shown for a key the run does not have (and the baseline does).
UNSET = "<unset>"


def config_diff(config: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened keys whose value differs from ``baseline`` (``IGNORED_KEYS`` left out), with this run's value."""
    keys = (set(config) | set(baseline)) - IGNORED_KEYS
    return {k: config.get(k, UNSET) for k in sorted(keys) if config.get(k, UNSET) != baseline.get(k, UNSET)}


def read_epoch_metrics(path: Path) -> dict[str, dict[int, float]]:
    """``metric -> {epoch: value}`` from one ``metrics.csv`` (the last value logged per epoch).

    Raises:
        MedimgError: the file is not a readable metrics CSV (a damaged or truncated file); the message says what.
    """
    out: dict[str, dict[int, float]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "epoch" not in reader.fieldnames:
                raise MedimgError("no 'epoch' column: not a Lightning metrics.csv, or damaged", path)
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise MedimgError(f"line {line} has the wrong number of cells (damaged or truncated)", path)
                if not row["epoch"]:
                    continue
                epoch = int(float(row["epoch"]))
                for key, value in row.items():
                    if key not in ("epoch", "step") and value:
                        out.setdefault(key, {})[epoch] = float(value)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise MedimgError(f"cannot be read ({type(exc).__name__}: {exc})", path) from exc
    return out


def _class_mean_last(metrics: Mapping[str, Mapping[int, float]], prefix: str) -> float | None:
    cols = [v for k, v in metrics.items() if k.startswith(prefix) and v]
    if not cols:
        return None
    last = max(max(c) for c in cols)
    values = [c[last] for c in cols if last in c and math.isfinite(c[last])]
    return sum(values) / len(values) if values else None


def _read_json(path: Path, row: RunRow) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        row.notes.append(f"{path.name} unreadable ({type(exc).__name__})")
        return None
    return loaded if isinstance(loaded, dict) else None


def _read_config(folder: Path, fingerprint: Mapping[str, Any] | None, row: RunRow) -> dict[str, Any]:
    import yaml

    path = folder / "config.yaml"
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                return flatten(loaded)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            row.notes.append(f"config.yaml unreadable ({type(exc).__name__})")
    saved = (fingerprint or {}).get("config") or {}
    if isinstance(saved, dict) and isinstance(saved.get("fit"), dict):
        return flatten(saved["fit"])
    row.notes.append("no config.yaml: config not compared")
    return {}


def _fill_metrics(folder: Path, row: RunRow) -> None:
    path = folder / "metrics.csv"
    if not path.is_file():
        row.notes.append("no metrics.csv")
        return
    try:
        metrics = read_epoch_metrics(path)
    except MedimgError as exc:
        row.notes.append(f"metrics.csv: {exc.reason}")
        return
    dice = {e: v for e, v in metrics.get(DICE, {}).items() if math.isfinite(v)}
    if dice:
        row.dice_best_epoch = max(dice, key=lambda e: (dice[e], -e))
        row.dice_best, row.dice_last = dice[row.dice_best_epoch], dice[max(dice)]
    row.hd95_mm_last = _class_mean_last(metrics, HD95_PREFIX)
    row.nsd_last = _class_mean_last(metrics, NSD_PREFIX)
    epochs = [e for v in metrics.values() for e in v]
    row.epochs = max(epochs) + 1 if epochs else None


def _fill_record(record: Mapping[str, Any] | None, row: RunRow) -> None:
    if record is None:
        row.notes.append(f"no {RUN_RECORD} (older medimg, or not a medimg fit): cost and status unknown")
        return
    row.status = str(record.get("status") or "unknown")
    if record.get("stage") not in (None, "fit"):
        row.status += f" ({record['stage']})"  # a `medimg validate` / `test` run: scores, no training
    if row.status == "running":
        row.notes.append("still running, or killed without a word (SIGKILL, out of memory, node lost)")
    if record.get("error"):
        row.notes.append(f"crashed with {record['error']}")
    row.wall_s, row.device_hours = _number(record, "wall_s", row), _number(record, "device_hours", row)
    row.device_kind = record.get("device_kind")
    row.peak_rss_mb, row.peak_gpu_mb = _number(record, "peak_rss_mb", row), _number(record, "peak_gpu_mb", row)
    epochs = _number(record, "epochs", row)
    row.epochs = int(epochs) if epochs is not None else row.epochs
    row.date = row.date or record.get("started")


def _number(record: Mapping[str, Any], key: str, row: RunRow) -> float | None:
    """``record[key]`` as a finite number; ``None`` (with a note) for what another medimg version or a hand edit
    left there instead."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    row.notes.append(f"{RUN_RECORD}: {key} is not a number ({type(value).__name__})")
    return None


def read_run(folder: Path, name: str) -> RunRow:
    """One run folder as a row (diff not yet filled: that needs the baseline)."""
    row = RunRow(name=name, path=folder)
    fingerprint = _read_json(folder / "fingerprint.json", row)
    if fingerprint is not None:
        row.commit = fingerprint.get("git_commit")
        row.dataset_digest = fingerprint.get("dataset_digest")
        attempts = fingerprint.get("attempts") or []
        row.attempts = len(attempts) if isinstance(attempts, list) and attempts else None
        if not row.attempts:
            row.notes.append("fingerprint.json without attempts (older medimg): attempts unknown")
        if row.attempts and isinstance(attempts[0], dict):
            row.date = attempts[0].get("started")
    else:
        row.notes.append("no fingerprint.json")
    row.config = _read_config(folder, fingerprint, row)
    _fill_metrics(folder, row)
    _fill_record(_read_json(folder / RUN_RECORD, row), row)
    if row.date is None:
        mtime = folder.stat().st_mtime
        row.date = datetime.fromtimestamp(mtime, tz=timezone.utc).isoformat(timespec="seconds")
    return row


def find_runs(root: Path) -> list[Path]:
    """Every ``lightning_logs/version_N`` folder under ``root`` (``root`` itself may be one)."""
    found = [p for p in root.rglob("version_*") if p.is_dir() and p.parent.name == "lightning_logs"]
    if root.name.startswith("version_") and root.parent.name == "lightning_logs":
        found.append(root)
    return sorted(set(found))


def _name(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root) if folder != root else Path(folder.name)
    parts = [p for p in rel.parts if p != "lightning_logs"]
    return "/".join(parts) or folder.name


def _natural(name: str) -> tuple[tuple[int, str], ...]:
    """``version_10`` after ``version_9``: digit runs compare as numbers."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", name))


def _pick_baseline(rows: Sequence[RunRow], baseline: str | None) -> RunRow:
    if baseline is None:
        return rows[0]
    matches = [r for r in rows if baseline in (r.name, str(r.path)) or r.name.endswith("/" + baseline)]
    if len(matches) != 1:
        names = ", ".join(r.name for r in rows)
        what = "matches no run" if not matches else "matches several runs"
        raise ConfigError(f"--baseline {baseline!r} {what}; name one of: {names}")
    return matches[0]


def table(root: str | os.PathLike[str], baseline: str | None = None) -> RunTable:
    """The runs under ``root``, oldest first, each compared with ``baseline`` (a run's name as listed, or the end
    of its path such as ``version_3``; default: the oldest run).

    Raises:
        MedimgError: ``root`` does not exist or is not a folder.
        ConfigError: ``baseline`` names no run, or more than one.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise MedimgError("no such folder: give the folder a `medimg fit` wrote (its default_root_dir)", folder)
    rows = [read_run(p, _name(p, folder)) for p in find_runs(folder)]
    if not rows:
        note = "no runs found (no lightning_logs/version_N folder): is this the folder `medimg fit` wrote into?"
        return RunTable(root=folder, rows=[], baseline=None, notes=[note])
    rows.sort(key=lambda r: (r.date or "", _natural(r.name)))
    base = _pick_baseline(rows, baseline)
    for row in rows:
        row.diff = config_diff(row.config, base.config) if row.config and base.config else {}
    return RunTable(root=folder, rows=rows, baseline=base.name)
