"""scripts/slurm_fit.sbatch on a real one-node SLURM cluster (Debian's slurm-wlm, started by the fixture).

Every job is the shipped script submitted with ``sbatch``; only sbatch options and medimg options adapt it to
this 2-core machine (no GPU requested, CPU accelerator, tiny model and patches).
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, ensure_installed
from tests_support import ROOT, SMALL_FIT
from tracking_support import MLFLOW_ARGS, check_one_run, local_store

from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.logs import read_metrics

SCRIPT = ROOT / "scripts" / "slurm_fit.sbatch"
CONFIG = ROOT / "configs" / "seg_unet3d.yaml"
CPU_JOB = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", "--time=15"]
# SMALL_FIT without its --config (the script's first argument) and with 2 steps per rank and epoch
FIT_ARGS = [*SMALL_FIT[2:], "--data.epoch_length", "8", "--trainer.callbacks+=medimg.tasks.callbacks.WeightsDigest"]
LR = 0.01  # SMALL_FIT's --model.lr
EPOCHS = 4  # of the preempted job (a signal seen at an epoch's last batch is acted on in the next epoch)
JOB_TIMEOUT = 420  # seconds; a job here takes about one minute on 2 idle cores


@pytest.fixture(scope="module")
def cluster():
    why = ensure_installed()
    if why is not None:
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="medimg-slurm-") as tmp:  # short path: munge's socket lives here
        c = SlurmCluster(Path(tmp))
        try:
            c.start()
            yield c
        finally:
            c.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_phantom_msd(tmp_path_factory.mktemp("msd") / "Task99_Phantom", n_cases=6, n_test=1, seed=3)


def submit_fit(cluster: SlurmCluster, work: Path, *args: str, sbatch: tuple[str, ...] = ()) -> tuple[str, Path]:
    """Submit the shipped script; return (job id, output file)."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / "job.out"
    env = {"MEDIMG_VENV": str(ROOT / ".venv"), "MEDIMG_RUN_DIR": str(work / "run")}
    job = cluster.sbatch([*CPU_JOB, f"--output={out}", *sbatch, str(SCRIPT), *args], env=env, cwd=work)
    return job, out


def epochs_of(run: Path, key: str) -> dict[int, float]:
    return dict(read_metrics(run).get(key, []))


def lr_by_epoch(run: Path, steps_per_epoch: int) -> dict[int, list[float]]:
    """The learning rates LearningRateMonitor logged at each epoch start (rows with a step, no epoch), by epoch."""
    found: dict[int, list[float]] = {}
    for path in sorted(run.glob("lightning_logs/version_*/metrics.csv")):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                if row.get("lr-AdamW"):
                    found.setdefault(int(row["step"]) // steps_per_epoch, []).append(float(row["lr-AdamW"]))
    return found


def digests(run: Path) -> dict[str, str]:
    newest = max((run / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return {p.name: p.read_text() for p in newest.glob("weights_rank*.sha256")}


@pytest.mark.slow
def test_slurm_ddp_job_completes_with_identical_weights(cluster, dataset, tmp_path):
    job, out = submit_fit(cluster, tmp_path, str(CONFIG), str(dataset), *FIT_ARGS, "--trainer.max_epochs", "2")
    info = cluster.wait_done(job, JOB_TIMEOUT, out)
    why = cluster.diagnostics(job, out)
    assert info["JobState"] == "COMPLETED", why
    assert [r.state for r in cluster.sacct(job)] == ["COMPLETED"], why
    run = tmp_path / "run"
    assert sorted(epochs_of(run, "train/loss_epoch")) == [0, 1], why
    assert sorted(epochs_of(run, "val/dice")) == [0, 1], why
    d = digests(run)
    assert sorted(d) == ["weights_rank0.sha256", "weights_rank1.sha256"], why
    assert len(set(d.values())) == 1, why  # DDP kept both replicas identical
    text = out.read_text()
    assert "distributed_backend=gloo" in text and "Starting with 2 processes" in text, why


@pytest.fixture(scope="module")
def preempted(cluster, dataset, tmp_path_factory):
    """A job that gets SLURM's warning signal once epoch 0 is checkpointed, requeues and finishes."""
    work = tmp_path_factory.mktemp("preempted")
    fit = [*FIT_ARGS, *MLFLOW_ARGS, "--trainer.max_epochs", str(EPOCHS)]  # with MLflow's local store
    job, out = submit_fit(cluster, work, str(CONFIG), str(dataset), *fit)
    run = work / "run"
    cluster.wait_state(job, {"RUNNING"}, JOB_TIMEOUT, out)
    first = run / "checkpoints" / "last.ckpt"
    cluster.wait_until(lambda: first.exists(), JOB_TIMEOUT, f"{first} (end of epoch 0)", job, out)
    # what #SBATCH --signal=USR1@120 does before the time limit, now; --full: the batch shell gets it too
    cluster.run(["scancel", "--signal=USR1", "--full", job])
    info = cluster.wait_done(job, JOB_TIMEOUT, out)
    return {"job": job, "out": out, "run": run, "info": info, "why": cluster.diagnostics(job, out)}


@pytest.mark.slow
def test_slurm_warning_signal_checkpoints_requeues_and_resumes(cluster, preempted):
    job, run, why = preempted["job"], preempted["run"], preempted["why"]
    assert preempted["info"]["JobState"] == "COMPLETED", why
    assert preempted["info"]["Restarts"] == "1", why
    # sacct (job-completion records): the requeued run, then the completed one
    states = [r.state for r in cluster.sacct(job)]
    assert len(states) == 2 and states[-1] == "COMPLETED" and states[0] in {"PENDING", "REQUEUED"}, why
    text = preempted["out"].read_text()
    assert f"requeueing job {job}" in text and "attempt 2" in text and "resuming from last.ckpt" in text, why
    interrupted = int(text.split("medimg: preempted: ")[1].split(" at epoch ")[1].split(";")[0])

    # the second attempt resumed in the interrupted epoch: no finished epoch redone, none lost
    versions = sorted((run / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert len(versions) == 2, why
    resumed = json.loads((versions[1] / "fingerprint.json").read_text())["attempts"][-1]
    assert resumed["start_epoch"] == interrupted, (resumed, why)
    assert resumed["start_global_step"] > 0, resumed
    loss = epochs_of(run, "train/loss_epoch")
    assert sorted(loss) == list(range(EPOCHS)), (loss, why)
    assert sorted(epochs_of(run, "val/dice")) == list(range(EPOCHS)), why
    # the cosine schedule continues where it was (a restarted scheduler would log LR again for every epoch)
    lr = lr_by_epoch(run, steps_per_epoch=2)  # epoch_length 8, batch 2, 2 ranks
    assert sorted(lr) == list(range(EPOCHS)), lr
    for epoch, values in lr.items():  # the interrupted epoch logs its rate twice: once per attempt
        want = LR * (1 + math.cos(math.pi * epoch / EPOCHS)) / 2
        assert values == pytest.approx([want] * len(values)), (epoch, lr)
    d = digests(run)
    assert len(d) == 2 and len(set(d.values())) == 1, why
    assert not (run / "requeue.json").exists()  # the resumed attempt cleared the request
    assert not list((run / "checkpoints").glob(".*")), why  # no partial checkpoint left


@pytest.mark.slow
def test_slurm_requeued_run_fingerprint_records_both_attempts(preempted):
    run = preempted["run"]
    newest = max((run / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    attempts = json.loads((newest / "fingerprint.json").read_text())["attempts"]
    assert [a["job_id"] for a in attempts] == [preempted["job"]] * 2, attempts
    assert [a["restart_count"] for a in attempts] == [0, 1], attempts
    assert [a["scheduler"] for a in attempts] == ["slurm", "slurm"], attempts
    assert attempts[0]["started"] <= attempts[1]["started"], attempts  # ISO 8601 UTC: text order is time order
    assert attempts[0]["resumed_from"] is None and attempts[0]["start_epoch"] == 0, attempts
    assert attempts[1]["resumed_from"].endswith("last.ckpt"), attempts
    first = json.loads((run / "lightning_logs" / "version_0" / "fingerprint.json").read_text())["attempts"]
    assert first == attempts[:1]  # the first attempt's own record, unchanged
    # MLflow: one run across the requeue (its id came back from last.ckpt), both attempts tagged, rank 0 only
    mlflow_run, tagged = check_one_run(local_store(run), EPOCHS)
    assert [(a["job_id"], a["restart_count"]) for a in tagged] == [(preempted["job"], 0), (preempted["job"], 1)]
    assert "medimg.attempt.2.changed_params" not in mlflow_run.data.tags, mlflow_run.data.tags  # same config
    assert mlflow_run.data.params["trainer.max_epochs"] == str(EPOCHS), mlflow_run.data.params


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no dataset argument", "no dataset folder given"),
        ("dataset only on the submit host", "does not exist on node"),
        ("more devices than GPUs", "gives it 0 GPU(s)"),
        ("devices unlike tasks per node", "--trainer.devices 3 does not match the 2 task(s) per node"),
    ],
)
def test_slurm_bad_input_fails_fast_with_a_clear_message(cluster, dataset, tmp_path, case, expected):
    gone = tmp_path / "submit-host-only" / "Task99_Phantom"
    args: list[str] = {
        "no dataset argument": [str(CONFIG)],
        "dataset only on the submit host": [str(CONFIG), str(gone)],
        "more devices than GPUs": [str(CONFIG), str(dataset), "--trainer.devices", "2"],
        "devices unlike tasks per node": [str(CONFIG), str(dataset), "--trainer.accelerator", "cpu",
                                          "--trainer.devices", "3"],
    }[case]  # fmt: skip
    hold: tuple[str, ...] = ()
    if case == "dataset only on the submit host":
        gone.mkdir(parents=True)  # there when sbatch runs ...
        hold = ("--hold",)
    job, out = submit_fit(cluster, tmp_path, *args, sbatch=hold)
    if hold:
        gone.rmdir()  # ... but not on the node when the job starts
        cluster.run(["scontrol", "release", job])
    info = cluster.wait_done(job, JOB_TIMEOUT, out)
    why = cluster.diagnostics(job, out)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0", why
    text = out.read_text()
    assert "medimg-fit: error: " in text and expected in text, why
    if case == "dataset only on the submit host":
        assert str(gone) in text, why
    assert "Seed set" not in text, why  # failed before any training process started


@pytest.mark.slow
def test_slurm_convert_array_with_a_killed_task_resumes_and_merges(cluster, phantom, tmp_path):
    from medimg.io.dicom.write import write_series

    archive, out = tmp_path / "archive", tmp_path / "nifti"
    studies = [f"study{i:02d}" for i in range(9)]  # 3 per task
    for i, study in enumerate(studies):
        write_series(phantom(shape=(10, 12, 4 + i % 3), seed=i), archive / study / "t1", modality="MR",
                     series_description="T1 axial", study_uid=f"1.2.826.0.1.3680043.8.498.{i + 1}")  # fmt: skip
    (archive / "study04" / "notes").mkdir()
    (archive / "study04" / "notes" / "readme.txt").write_text("not DICOM")  # skipped by scan, still done
    script = str(ROOT / "scripts" / "slurm_convert.sbatch")
    env = {"MEDIMG_VENV": str(ROOT / ".venv")}
    log = str(tmp_path / "convert-%A_%a.out")

    array = cluster.sbatch(["--array=0-2", "--hold", f"--output={log}", script, str(archive), str(out)], env=env)
    cluster.run(["scontrol", "release", f"{array}_1"])
    cluster.wait_state(f"{array}_1", {"RUNNING"}, JOB_TIMEOUT)
    cluster.run(["scancel", "--signal=KILL", "--full", f"{array}_1"])  # task 1 dies in the middle of its share
    for task in (0, 2):
        cluster.run(["scontrol", "release", f"{array}_{task}"])
    for task in range(3):
        cluster.wait_done(f"{array}_{task}", JOB_TIMEOUT, tmp_path / f"convert-{array}_{task}.out")
    why = cluster.diagnostics(array, tmp_path / f"convert-{array}_1.out")
    states = {t: cluster.show_job(f"{array}_{t}")["JobState"] for t in range(3)}
    assert states[0] == states[2] == "COMPLETED" and states[1] != "COMPLETED", (states, why)
    undone = [s for s in studies if not (out / "reports" / f"{s}.done").exists()]
    assert undone and set(undone) <= {"study01", "study04", "study07"}, (undone, why)

    merge = [f"--output={tmp_path / 'merge-%j.out'}", script, "--merge", str(archive), str(out)]
    job = cluster.sbatch(merge, env=env)
    assert cluster.wait_done(job, JOB_TIMEOUT)["JobState"] == "FAILED"
    text = (tmp_path / f"merge-{job}.out").read_text()
    assert f"{len(undone)} of 9 studies not done yet: {', '.join(undone)}" in text, text

    # resubmit only the killed task (with the original task count): it skips what it had finished
    again = cluster.sbatch(["--array=1", f"--output={log}", script, str(archive), str(out), "3"], env=env)
    out_again = tmp_path / f"convert-{again}_1.out"
    assert cluster.wait_done(f"{again}_1", JOB_TIMEOUT, out_again)["JobState"] == "COMPLETED"
    text = out_again.read_text()
    assert all(f"done {s}" in text for s in undone), text
    assert all(f"skip {s} (done)" in text for s in {"study01", "study04", "study07"} - set(undone)), text

    job = cluster.sbatch(merge, env=env)
    assert cluster.wait_done(job, JOB_TIMEOUT)["JobState"] == "COMPLETED", (tmp_path / f"merge-{job}.out").read_text()
    with (out / "qa.tsv").open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert sorted(r["study"] for r in rows) == studies  # one series per study, each exactly once
    assert {r["result"] for r in rows} == {"converted"}, rows
    assert [r["shape"] for r in rows] == [f"10x12x{4 + i % 3}" for i in range(9)], rows
    assert len(list(out.glob("study*/*.nii.gz"))) == 9
