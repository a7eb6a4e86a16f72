"""scripts/fit_folds.sh refuses what it cannot run, before any training starts, in one line with exit status 2.

The training itself is `medimg fit --data.fold K` once per fold (tested with the data module's folds); a real
two-fold run takes a minute on 2 cores, so it is not repeated here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fit_folds.sh"


@pytest.mark.parametrize(
    ("folds", "data", "needle"),
    [
        ("0", "data", "FOLDS must be a positive number"),
        ("two", "data", "FOLDS must be a positive number"),
        ("2", "missing", "does not exist"),
        ("", "data", "usage: scripts/fit_folds.sh CONFIG DATASET_DIR FOLDS"),
    ],
)
def test_fit_folds_refuses_before_training(tmp_path, folds, data, needle):
    (tmp_path / "data").mkdir()
    config = ROOT / "configs" / "seg_unet3d.yaml"
    proc = subprocess.run(["bash", str(SCRIPT), str(config), str(tmp_path / data), folds],
                          capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("fit_folds: error: ") and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
