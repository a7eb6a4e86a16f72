"""Runs that die the way scheduled jobs die (SIGKILL at random moments and mid checkpoint write, then
``--ckpt_path last``), and scripts/torchrun_fit.sh with 2 CPU processes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests_support import ROOT, SMALL_FIT
from tracking_support import MLFLOW_ARGS, check_one_run, local_store

from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.logs import read_metrics

EPOCHS = 3
RUN_TIMEOUT = 420  # seconds for one short CPU run (about 30 s on 2 idle cores)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_phantom_msd(tmp_path_factory.mktemp("msd") / "Task99_Phantom", n_cases=6, n_test=1, seed=3)


def fit_cmd(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "medimg", "fit", *SMALL_FIT, "--data.dataset_dir", str(dataset),
        "--trainer.max_epochs", str(EPOCHS), "--trainer.default_root_dir", str(out),
        "--data.num_workers", "2", "--data.epoch_length", "8", *extra,
    ]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    # a session of its own: the kill takes the data-loader workers too, as node loss would
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(proc: subprocess.Popen[bytes], ok, what: str, log: Path, poll: float = 0.05) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if ok():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(poll)
    pytest.fail(f"no {what} after {RUN_TIMEOUT} s:\n{log.read_text()[-4000:]}")


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def partial_writes(folder: Path) -> list[str]:
    """The temporary files of checkpoint writes in progress (medimg.io.atomic names them ``.<stem>.*<suffix>``)."""
    with os.scandir(folder) as entries:
        return [e.name for e in entries if e.name.startswith(".") and e.name.endswith(".ckpt")]


def training_started(out: Path, version: int):
    return (out / "lightning_logs" / f"version_{version}" / "fingerprint.json").exists


@pytest.mark.slow
def test_sigkill_at_random_moments_and_mid_checkpoint_write_resumes_from_last(dataset, tmp_path):
    out, log = tmp_path / "run", tmp_path / "runs.log"
    ckpts, last = out / "checkpoints", out / "checkpoints" / "last.ckpt"
    rng = random.Random(16)
    saved_epochs: list[int] = []

    # 1. killed at a random moment of epoch 1 (after epoch 0's checkpoint)
    proc = start(fit_cmd(dataset, out, *MLFLOW_ARGS), log)  # with MLflow's local store
    wait_for(proc, last.exists, "the first last.ckpt", log)
    time.sleep(rng.uniform(0.0, 1.0))
    kill(proc)
    saved_epochs.append(torch.load(last, weights_only=False)["epoch"])  # complete and loadable

    # 2. resumed, then killed the moment a checkpoint write has begun (its temporary file exists)
    proc = start(fit_cmd(dataset, out, *MLFLOW_ARGS, "--ckpt_path", "last"), log)
    wait_for(proc, training_started(out, 1), "training of the resumed run", log)
    wait_for(proc, lambda: bool(partial_writes(ckpts)), "a checkpoint write", log, poll=0.002)
    kill(proc)
    saved_epochs.append(torch.load(last, weights_only=False)["epoch"])  # intact: the old one or the new one

    if not partial_writes(ckpts):
        # The kill landed just after the rename. What a kill inside torch.save leaves, then by hand: a
        # truncated temporary file next to last.ckpt, newer than it.
        (ckpts / ".last.k1ll3d0x.ckpt").write_bytes(last.read_bytes()[: last.stat().st_size // 2])

    # 3. resumed to the end
    proc = start(fit_cmd(dataset, out, *MLFLOW_ARGS, "--ckpt_path", "last"), log)
    assert proc.wait(timeout=RUN_TIMEOUT) == 0, log.read_text()[-4000:]

    assert not list(ckpts.glob(".*")), sorted(ckpts.iterdir())  # partial writes removed, none added
    assert torch.load(last, weights_only=False)["epoch"] == EPOCHS - 1
    metrics = read_metrics(out)
    assert [e for e, _ in metrics["train/loss_epoch"]] == list(range(EPOCHS)), metrics
    assert [e for e, _ in metrics["val/dice"]] == list(range(EPOCHS)), metrics
    newest = max((out / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    attempts = json.loads((newest / "fingerprint.json").read_text())["attempts"]
    # each attempt started right after the epoch of the checkpoint it resumed from: only the epoch that was
    # running when the kill came is repeated. (The attempts recorded are those that led to the final
    # state: the second one is not among them when it was killed before its first checkpoint.)
    second_saved = saved_epochs[1] != saved_epochs[0]
    want = [0, saved_epochs[0] + 1] + ([saved_epochs[1] + 1] if second_saved else [])
    assert [a["start_epoch"] for a in attempts] == want, (saved_epochs, attempts)
    assert all(a["resumed_from"] == str(last) for a in attempts[1:]), attempts
    # MLflow: one run through the kills (its id came back from last.ckpt); every attempt that reached training is
    # tagged, the second one too when it got that far before its kill
    _, tagged = check_one_run(local_store(out), EPOCHS)
    assert {a["started"] for a in attempts} <= {a["started"] for a in tagged}, (attempts, tagged)
    assert 2 <= len(tagged) <= 3 and tagged[0]["start_epoch"] == 0, tagged


@pytest.mark.slow
def test_torchrun_script_trains_two_cpu_processes(dataset, tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "TORCHELASTIC_"))}
    env.update(MEDIMG_VENV=str(Path(sys.executable).parent.parent))
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "torchrun_fit.sh"), str(ROOT / "configs" / "seg_unet3d.yaml"),
         str(dataset), "2", *SMALL_FIT[2:], "--trainer.max_epochs", "1", "--data.epoch_length", "8",
         "--trainer.default_root_dir", str(out), "--trainer.callbacks+=medimg.tasks.callbacks.WeightsDigest",
         *MLFLOW_ARGS],
        capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    digests = {p.name: p.read_text() for p in out.rglob("weights_rank*.sha256")}
    assert sorted(digests) == ["weights_rank0.sha256", "weights_rank1.sha256"]
    assert len(set(digests.values())) == 1
    fp = json.loads(next(out.rglob("fingerprint.json")).read_text())
    assert fp["attempts"][0]["scheduler"] == "torchelastic", fp["attempts"]
    _, tagged = check_one_run(local_store(out), 1)  # 2 ranks, one MLflow run: rank 0 alone tracks
    assert [a["scheduler"] for a in tagged] == ["torchelastic"], tagged


def test_torchrun_script_without_gpus_or_count_says_what_to_give(dataset, tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "torchrun_fit.sh"), str(ROOT / "configs" / "seg_unet3d.yaml"), str(dataset)],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "give the number of processes as the third argument and --trainer.accelerator cpu" in proc.stderr


def test_kubernetes_job_resumes_and_does_not_count_preemption_as_failure():
    import yaml

    from medimg.tasks.preemption import EXIT_REQUEUE

    job = yaml.safe_load((ROOT / "docker" / "k8s-train-job.yaml").read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:2] == ["medimg", "fit"] and args[args.index("--ckpt_path") + 1] == "last"
    assert (ROOT / args[args.index("--config") + 1].replace("/opt/medimg/", "")).is_file()  # shipped in the image
    devices = args[args.index("--trainer.devices") + 1]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == devices
    rules = job["spec"]["podFailurePolicy"]["rules"]
    ignored = [r for r in rules if r["action"] == "Ignore"]
    assert any(EXIT_REQUEUE in r.get("onExitCodes", {}).get("values", []) for r in ignored)
    assert any(c["type"] == "DisruptionTarget" for r in ignored for c in r.get("onPodConditions", []))
    assert "pkill -USR1 -f '[m]edimg fit'" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert pod["securityContext"]["runAsNonRoot"] is True
