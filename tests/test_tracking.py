"""MLflow tracking (:mod:`medimg.tasks.tracking`): a real ``mlflow server`` started here receives a run over HTTP,
and stopping it mid-run does not stop training. One run per medimg run across a SLURM requeue, SIGKILL resumes
and 2-rank DDP is checked on the local store by test_slurm.py and test_scale_out.py (tests/tracking_support.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests_support import SMALL_FIT
from tracking_support import MLFLOW_ARGS, MlflowServer, check_one_run, free_port, local_store, runs_in

from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.tracking import MLflowRunLogger, flatten_config
from medimg.tasks.tracking_buffer import public_uri

EPOCHS = 2
RUN_TIMEOUT = 420  # seconds for one short CPU run (about 30 s on 2 idle cores)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://alice:s3cret@mlflow.hospital.org/track", "https://mlflow.hospital.org/track"),
        ("http://token@10.0.0.2:8080", "http://10.0.0.2:8080"),
        ("sqlite:////data/runs/mlruns/mlflow.db", "sqlite:////data/runs/mlruns/mlflow.db"),
    ],
)
def test_messages_never_show_credentials(uri, shown):
    assert public_uri(uri) == shown


def test_config_is_flattened_into_params():
    config = {"trainer": {"max_epochs": 3, "callbacks": None}, "model": {"init_args": {"roi_size": [32, 32, 32]}}}
    assert flatten_config(config) == {"trainer.max_epochs": "3", "trainer.callbacks": "None",
                                      "model.init_args.roi_size": "[32, 32, 32]"}  # fmt: skip


def test_a_refused_write_is_left_out_and_the_rest_is_sent(tmp_path, capsys):
    logger = MLflowRunLogger()
    logger.bind(tmp_path / "run")
    logger.experiment.log_param(None, "lr", "0.01")
    logger.experiment.log_param(None, "lr", "0.02")  # MLflow refuses to change a param: dropped, not retried
    logger.log_metrics({"val/dice": 0.5}, step=7)
    logger.finalize("success")
    err = capsys.readouterr().err
    assert "log_param refused" in err and "INVALID_PARAMETER_VALUE" in err, err
    (run,) = runs_in(local_store(tmp_path / "run"))
    assert run.data.params == {"lr": "0.01"} and run.data.metrics == {"val/dice": 0.5}
    assert run.info.status == "FINISHED" and run.info.run_name == "run"


def test_an_unreachable_server_never_raises(tmp_path, capsys):
    logger = MLflowRunLogger(tracking_uri=f"http://user:pw@127.0.0.1:{free_port()}", flush_timeout_s=2)
    logger.bind(tmp_path)
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    logger.finalize("success")  # tries for flush_timeout_s, then says what was not sent
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0] and "training goes on" in lines[0], lines
    assert "4 tracking write(s) not sent" in lines[1], lines  # 3 batches of metrics and the final status
    assert "pw" not in "".join(lines)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_phantom_msd(tmp_path_factory.mktemp("msd") / "Task99_Phantom", n_cases=6, n_test=1, seed=3)


def wait_for(proc: subprocess.Popen[bytes], ok, what: str, log: Path) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if ok():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} after {RUN_TIMEOUT} s:\n{log.read_text()[-4000:]}")


def logged_dice(uri: str) -> bool:
    try:
        return any("val/dice" in r.data.metrics for r in runs_in(uri))
    except Exception:  # the server is starting or stopping
        return False


@pytest.mark.slow
def test_server_receives_the_run_and_an_outage_does_not_stop_training(dataset, tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    log, out = tmp_path / "fit.log", tmp_path / "run"
    cmd = [sys.executable, "-m", "medimg", "fit", *SMALL_FIT, *MLFLOW_ARGS, "--data.dataset_dir", str(dataset),
           "--trainer.max_epochs", str(EPOCHS), "--data.epoch_length", "8", "--trainer.default_root_dir", str(out),
           "--trainer.logger.tracking_uri", server.uri, "--trainer.logger.flush_timeout_s", "240"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        wait_for(proc, lambda: logged_dice(server.uri), "the first validation Dice on the server", log)
        server.stop()  # mid-run: epoch 0 is on the server, the other epochs are not
        wait_for(proc, lambda: "unreachable" in log.read_text(), "the warning", log)
        server.start()
        assert proc.wait(timeout=RUN_TIMEOUT) == 0, log.read_text()[-4000:]
        text = log.read_text()
        (warning,) = [line for line in text.splitlines() if line.startswith("medimg: warning: ")]
        assert "unreachable" in warning and "training goes on" in warning, warning
        assert "medimg: MLflow tracking store " + server.uri + " is back" in text, text[-3000:]
        run, attempts = check_one_run(server.uri, EPOCHS)
        assert len(attempts) == 1 and attempts[0]["start_epoch"] == 0, attempts
        assert run.data.params["trainer.max_epochs"] == str(EPOCHS), run.data.params
        assert run.data.tags["medimg.dataset_digest"] and run.data.tags["medimg.git_commit"], run.data.tags
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert not (out / "mlruns").exists()  # a server given: no local store
