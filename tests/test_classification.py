"""ClassificationTask + ClassificationDataModule through the CLI, and every shipped config parses."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medimg.io import Volume
from medimg.tasks.lightning_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _shapes_dataset(folder: Path, n: int = 32) -> Path:
    """A bright disc somewhere (label 1) or none (label 0) on noise, as 2D NIfTI slices (64 x 64 x 1)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    rows = []
    for i in range(n):
        label = i % 2
        cy, cx = rng.integers(20, 44, 2)
        img = rng.normal(0, 0.2, (64, 64))
        if label:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] += 2
        Volume(img[..., None].astype(np.float32), np.eye(4)).save(folder / f"img{i:02d}.nii.gz")
        rows.append({"image": f"img{i:02d}.nii.gz", "label": label})
    with (folder / "cases.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "label"])
        w.writeheader()
        w.writerows(rows)
    return folder / "cases.csv"


def test_classification_fit_learns_to_find_the_disc(tmp_path):
    manifest = _shapes_dataset(tmp_path)
    out = tmp_path / "run"
    run_cli([
        "fit", "--config", str(ROOT / "configs" / "classify_resnet18.yaml"), "--data.manifest", str(manifest),
        "--data.image_size", "[64, 64]", "--data.batch_size", "8", "--data.num_workers", "0",
        "--data.num_folds", "4", "--trainer.max_epochs", "6", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
        "--model.lr", "0.003",
    ])  # fmt: skip
    rows = list(csv.DictReader((out / "lightning_logs" / "version_0" / "metrics.csv").open()))
    auroc = [float(r["val/auroc"]) for r in rows if r.get("val/auroc")]
    assert max(auroc) >= 0.9, auroc
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_parse(config, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", "fit", "--config", str(ROOT / "configs" / config), "--print_config"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "class_path: medimg." in proc.stdout
