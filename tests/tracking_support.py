"""MLflow for the tests: a real ``mlflow server`` on 127.0.0.1 (started and stopped by the test), and the checks
that a tracking store holds one run per medimg run with every epoch once in order and every attempt tagged."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests_support import ROOT

#: Add to a ``medimg fit`` command line: MLflow on, local store in the run folder.
MLFLOW_ARGS = ["--config", str(ROOT / "configs" / "mlflow.yaml")]
SERVER_START_TIMEOUT = 240  # seconds; a first start (database migrations) takes about 45 s on 2 loaded cores


def local_store(run: Path) -> str:
    """The tracking URI of the default store of a run folder (``--trainer.default_root_dir``)."""
    return f"sqlite:///{run / 'mlruns' / 'mlflow.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """``mlflow server`` with a SQLite backend and a local artifact root in ``folder``, on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = Path(sys.executable).parent / "mlflow"
        cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
               "--default-artifact-root", str(self.folder / "artifacts")]  # fmt: skip
        # a session of its own: stopping it takes uvicorn's worker and the job runner too
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server ended ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server not up after {SERVER_START_TIMEOUT} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # its worker and job runner too (same process group)
            os.killpg(self.proc.pid, signal.SIGKILL)


def runs_in(uri: str) -> list[Any]:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(experiments, run_view_type=ViewType.ALL)) if experiments else []


def epochs_logged(uri: str, run_id: str, key: str) -> list[tuple[int, int]]:
    """``[(step, epoch), ...]`` of each value of metric ``key``, by step (Lightning logs ``epoch`` with it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    epoch_at = {m.step: int(m.value) for m in client.get_metric_history(run_id, "epoch")}
    return sorted((m.step, epoch_at[m.step]) for m in client.get_metric_history(run_id, key))


def attempts_tagged(run: Any) -> list[dict[str, Any]]:
    tags = run.data.tags
    n = int(tags["medimg.attempts"])
    assert sorted(k for k in tags if k.startswith("medimg.attempt.") and k.count(".") == 2) == sorted(
        f"medimg.attempt.{i}" for i in range(1, n + 1)
    ), tags
    return [json.loads(tags[f"medimg.attempt.{i}"]) for i in range(1, n + 1)]


def check_one_run(uri: str, epochs: int) -> tuple[Any, list[dict[str, Any]]]:
    """The store holds exactly one run, finished, whose per-epoch metrics cover epochs ``0..epochs-1`` with steps
    that only go up from epoch to epoch (no second run, no restart from step 0); returns it and its attempts."""
    runs = runs_in(uri)
    assert len(runs) == 1, [(r.info.run_id, r.info.status, r.data.tags.get("medimg.attempts")) for r in runs]
    (run,) = runs
    assert run.info.status == "FINISHED", run.info
    for key in ("val/dice", "train/loss_epoch"):
        logged = epochs_logged(uri, run.info.run_id, key)
        step_of = {epoch: step for step, epoch in logged}  # an epoch redone after a kill: same step again
        assert sorted(step_of) == list(range(epochs)), (key, logged)
        steps = [step_of[e] for e in range(epochs)]
        assert steps == sorted(set(steps)), (key, logged)
        assert len({e for s, e in logged if step_of[e] != s}) == 0, (key, logged)
    return run, attempts_tagged(run)
