"""Training end to end on a generated MSD phantom dataset (CPU, seconds per run)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests_support import SMALL_FIT

from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.lightning_cli import run_cli
from medimg.tasks.metrics import dice

ROOT = Path(__file__).resolve().parents[1]
SMALL = SMALL_FIT


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_phantom_msd(tmp_path_factory.mktemp("msd") / "Task99_Phantom", n_cases=6, n_test=1, seed=3)


def fit(dataset: Path, out: Path, *extra: str, epochs: int = 3) -> Path:
    args = ["fit", *SMALL, "--data.dataset_dir", str(dataset), "--trainer.max_epochs", str(epochs)]
    run_cli([*args, "--trainer.default_root_dir", str(out), *extra])
    return out


def metrics(out: Path, version: int = 0) -> list[dict[str, str]]:
    with open(out / "lightning_logs" / f"version_{version}" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def epoch_values(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key)}


def test_fit_learns_and_writes_run_records(dataset, tmp_path):
    out = fit(dataset, tmp_path / "run")
    val_dice = epoch_values(metrics(out), "val/dice")
    assert max(val_dice.values()) > 0.8, val_dice  # the organ is learnt in 3 short epochs
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "checkpoints").glob("best-epoch*.ckpt"))
    fp = json.loads((out / "lightning_logs" / "version_0" / "fingerprint.json").read_text())
    assert fp["torch"] and fp["monai"] and fp["pytorch_lightning"]
    assert len(fp["dataset_digest"]) == 64
    assert fp["config"]["fit"]["trainer"]["max_epochs"] == 3
    assert list((out / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))  # TensorBoard too
    assert not list((out / "checkpoints").glob(".*"))  # no temporary files left by the atomic writer

    # medimg segment: mask in the input's own geometry, close to the truth
    image = dataset / "imagesTs" / "Phantom_006.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", "segment", str(out / "checkpoints" / "last.ckpt"), str(image),
         str(tmp_path / "mask.nii.gz")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    mask, src = nib.load(tmp_path / "mask.nii.gz"), nib.load(image)
    assert mask.shape == src.shape
    np.testing.assert_allclose(mask.affine, src.affine, atol=1e-5)
    truth = np.asarray(nib.load(dataset / "labelsTs" / "Phantom_006.nii.gz").dataobj) > 0
    pred = np.asarray(mask.dataobj) > 0
    assert dice(pred, truth) > 0.8


def test_resume_after_kill_reproduces_the_uninterrupted_run(dataset, tmp_path, monkeypatch):
    from medimg.tasks.segmentation import SegmentationTask

    det = ["--trainer.deterministic", "true"]
    full = fit(dataset, tmp_path / "full", *det, epochs=4)

    def killed_at_epoch_2(self):  # the job dies when epoch 2 starts, after epoch 1's checkpoint
        if self.current_epoch == 2:
            raise RuntimeError("simulated kill")

    with monkeypatch.context() as m:
        m.setattr(SegmentationTask, "on_train_epoch_start", killed_at_epoch_2, raising=False)
        with pytest.raises(RuntimeError, match="simulated kill"):
            fit(dataset, tmp_path / "killed", *det, epochs=4)
    fit(dataset, tmp_path / "killed", *det, "--ckpt_path", "last", epochs=4)
    want = epoch_values(metrics(full), "train/loss_epoch")
    got = epoch_values(metrics(tmp_path / "killed", 0), "train/loss_epoch")
    got.update(epoch_values(metrics(tmp_path / "killed", 1), "train/loss_epoch"))
    assert sorted(got) == [0, 1, 2, 3]
    for epoch in range(4):
        assert got[epoch] == pytest.approx(want[epoch], rel=1e-5, abs=1e-6), (epoch, got, want)


def test_nonfinite_loss_skips_the_step_and_stops_after_the_limit(dataset, tmp_path, monkeypatch):
    import torch

    from medimg.tasks.segmentation import NonFiniteLossError, SegmentationTask

    real = SegmentationTask.compute_loss
    calls = {"n": 0}
    snapshots: list[torch.Tensor] = []

    def poisoned(self, logits, label):
        calls["n"] += 1
        loss = real(self, logits, label)
        if self.training and calls["n"] == 3:
            snapshots.append(self.net.model[0].conv.unit0.conv.weight.detach().clone())
            return loss * float("nan")
        if self.training and calls["n"] == 4 and snapshots:
            # the step after the NaN starts from exactly the weights before it: the NaN step changed nothing
            snapshots.append(self.net.model[0].conv.unit0.conv.weight.detach().clone())
        return loss

    monkeypatch.setattr(SegmentationTask, "compute_loss", poisoned)
    fit(dataset, tmp_path / "nan", epochs=1)
    assert len(snapshots) == 2
    torch.testing.assert_close(snapshots[0], snapshots[1], rtol=0, atol=0)

    monkeypatch.setattr(SegmentationTask, "compute_loss", lambda self, lo, la: real(self, lo, la) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses"):
        fit(dataset, tmp_path / "diverged", "--model.max_nonfinite", "3", epochs=1)


@pytest.mark.slow
def test_two_rank_ddp_on_cpu_ends_with_identical_weights(dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "medimg", "fit", *SMALL, "--data.dataset_dir", str(dataset),
        "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(out),
        "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.callbacks+=medimg.tasks.callbacks.WeightsDigest",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = {p.name: p.read_text() for p in out.rglob("weights_rank*.sha256")}
    assert sorted(digests) == ["weights_rank0.sha256", "weights_rank1.sha256"]
    assert len(set(digests.values())) == 1


def test_wrong_class_count_is_a_config_error(dataset, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", "fit", *SMALL, "--data.dataset_dir", str(dataset),
         "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path), "--model.num_classes", "3"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "set --model.num_classes 2" in proc.stderr.strip().splitlines()[-1]


def test_metrics_of_a_rerun_replace_the_old_epochs(tmp_path):
    from medimg.tasks.logs import read_metrics

    for version, values in ((0, [0.9, 0.8, 0.7]), (1, [0.5, 0.4])):
        folder = tmp_path / "lightning_logs" / f"version_{version}"
        folder.mkdir(parents=True)
        lines = ["epoch,step,train/loss_epoch"] + [f"{e},{e * 10},{v}" for e, v in enumerate(values)]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert read_metrics(tmp_path)["train/loss_epoch"] == [(0, 0.5), (1, 0.4), (2, 0.7)]
