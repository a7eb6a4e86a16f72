"""Reading a run's logged metrics back; the learning-curve plots live in :mod:`medimg.viz.runs`."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

__all__ = ["read_metrics"]


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """``metric -> [(epoch, value), ...]`` (sorted by epoch) from the ``lightning_logs/version_*/metrics.csv``
    files under ``run_dir``. A resumed run continues in a new version folder, so the curves are joined; where two
    versions logged the same epoch (a re-run in the same folder), the newer version wins. Epoch-level values
    (the last logged per epoch) are returned."""
    by_epoch: dict[str, dict[int, float]] = defaultdict(dict)

    def version(p: Path) -> int:
        name = p.parent.name
        return int(name.split("_")[-1]) if name.startswith("version_") and name.split("_")[-1].isdigit() else -1

    for path in sorted(Path(run_dir).glob("**/metrics.csv"), key=version):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                if not row.get("epoch"):
                    continue
                for key, value in row.items():
                    if key not in ("epoch", "step") and value:
                        by_epoch[key][int(row["epoch"])] = float(value)
    return {k: sorted(v.items()) for k, v in by_epoch.items()}
