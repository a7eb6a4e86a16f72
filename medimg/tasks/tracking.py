"""MLflow tracking for ``medimg fit``: one MLflow run per medimg run, across requeues, kills and DDP ranks.

Turn it on with ``--trainer.logger medimg.tasks.tracking.MLflowRunLogger`` (or ``--config configs/mlflow.yaml``);
``--trainer.logger.tracking_uri http://127.0.0.1:5000`` sends to a tracking server (credentials go in MLflow's
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, not in the URI, which the run's ``config.yaml``
keeps). The run folder's own logs (TensorBoard, ``metrics.csv``, ``fingerprint.json``, ``run.json``) are written
as without it. What the MLflow run holds:

* params: the resolved config, flattened (``model.init_args.lr``); tags: the git commit, the dataset digest, the
  medimg version and, per attempt, ``medimg.attempt.<n>`` (job id, restart count, start time, epoch and step it
  started at);
* metrics: what the task logs, per step and per epoch, at the trainer's global step;
* artifacts: ``fingerprint.json``, ``run.json``, the resolved ``config.yaml`` and the ``--config`` files given
  (the plan, when the run came from ``medimg plan``). Checkpoints only with ``log_model: true``.

Where Lightning's :class:`~pytorch_lightning.loggers.MLFlowLogger` does not do the job, and what is changed:

* it creates its run in ``trainer.fit``'s setup, before a checkpoint is restored, so a requeued or resumed job
  starts a new MLflow run (Lightning-AI/pytorch-lightning#6205). Here the run is created, or re-opened, at the first
  write after the restore; the run id travels in every checkpoint (:class:`MLflowRunKeeper`'s state) and a
  resumed fit (``--ckpt_path``) goes on in the same run, its status set back to ``RUNNING``;
* its default store (``file:./mlruns``) is refused by MLflow 3 and its client is built on every rank at
  construction: here the default store is SQLite in the run's folder (``<default_root_dir>/mlruns/mlflow.db``,
  artifacts next to it), built by rank 0 at its first write; ``MLFLOW_TRACKING_URI`` is honoured;
* a store that fails raises inside ``fit``: here every write goes through
  :class:`~medimg.tasks.tracking_buffer.TrackingBuffer` (kept, sent when the store is back, never raises);
* a preempted run (:mod:`medimg.tasks.preemption`) ends ``KILLED``, not ``FAILED``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from medimg.tasks.tracking_buffer import TrackingBuffer, is_store_failure, public_uri

__all__ = ["MLflowRunKeeper", "MLflowRunLogger", "flatten_config"]

_UNBOUND = "http://unbound.invalid"  # a URI whose client Lightning's __init__ builds without touching anything
_WRITES = frozenset({"log_batch", "log_metric", "log_param", "set_tag", "delete_tag", "log_artifact",
                     "log_artifacts", "log_text", "log_dict", "set_terminated", "update_run"})  # fmt: skip
_PARAM_VALUE_MAX = 6000  # MLflow's limit on a param's value (characters)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"init_args": {"lr": 0.01}}} -> {"model.init_args.lr": "0.01"}``; lists stay whole."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = str(value)[:_PARAM_VALUE_MAX]
    return flat


class _BufferedClient:
    """What ``logger.experiment`` is: the run's writes go through the buffer (the ``run_id`` given is replaced by
    the run's own); anything else is the ``MlflowClient``'s."""

    def __init__(self, logger: MLflowRunLogger) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy and pickle probe for these before __init__ has run
            raise AttributeError(name)
        if name not in _WRITES:
            return getattr(self._logger.buffer.client, name)
        return functools.partial(self._write, name)

    def _write(self, method: str, *args: Any, **kwargs: Any) -> None:
        if "run_id" in kwargs:
            kwargs.pop("run_id")
        elif args:
            args = args[1:]
        self._logger.buffer.call(method, *args, **kwargs)


class MLflowRunLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger``, kept to one run per medimg run and never failing the fit (module docstring).

    Args:
        experiment_name: the MLflow experiment (created when missing).
        run_name: default: the name of the run's folder (``default_root_dir``).
        tracking_uri: ``http(s)://`` for a tracking server, ``sqlite:///path.db`` for a local store; default:
            ``MLFLOW_TRACKING_URI``, else ``sqlite:///<default_root_dir>/mlruns/mlflow.db``.
        tags: extra tags for the run.
        log_model: copy checkpoints into the run's artifacts (``"all"``: every one saved).
        prefix: put before every metric name.
        artifact_location: for a new experiment; default: ``artifacts/`` next to a SQLite store, else the
            server's choice.
        run_id: continue this MLflow run (default: the one in the checkpoint resumed from, else a new one).
        flush_timeout_s: at the end of the run, how long to keep trying to send what a failing store left
            pending (seconds).
    """

    def __init__(
        self,
        experiment_name: str = "medimg",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        log_model: bool | Literal["all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        # Lightning's __init__ builds an MlflowClient for its URI at once (a SQLite file on every DDP rank; an
        # exception for MLflow 3's refused file store): give it a placeholder, the real client comes from bind().
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=_UNBOUND,
            tags=tags,
            log_model=log_model,
            prefix=prefix,
            artifact_location=artifact_location,
            run_id=run_id,
        )
        self._tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
        self.flush_timeout_s = flush_timeout_s
        self.config: dict[str, Any] | None = None
        self.config_files: list[Path] = []
        self._buffer: TrackingBuffer | None = None
        self._proxy = _BufferedClient(self)

    def bind(self, root: str | os.PathLike[str]) -> None:
        """Settle the defaults that depend on the run folder ``root`` (the trainer's ``default_root_dir``)."""
        folder = Path(root).absolute()
        if not self._tracking_uri:
            self._tracking_uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
        if self._artifact_location is None and self._tracking_uri.startswith("sqlite:///"):
            db = Path(self._tracking_uri.removeprefix("sqlite:///"))
            self._artifact_location = (db.absolute().parent / "artifacts").as_uri()
        if self._run_name is None:
            self._run_name = folder.name

    @property
    def buffer(self) -> TrackingBuffer:
        if self._buffer is None:
            if not self._tracking_uri:
                self.bind(Path.cwd())
            self._buffer = TrackingBuffer(self._tracking_uri, self._make_client, self._open_run)
        return self._buffer

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    def _make_client(self) -> Any:
        from mlflow.tracking import MlflowClient

        if self._tracking_uri.startswith("sqlite:///"):
            Path(self._tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(self._tracking_uri)

    @property  # type: ignore[override]
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The run's client: writes are buffered and never raise (module docstring); creates nothing."""
        return self._proxy

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        return self._experiment_id

    def _open_run(self, client: Any) -> str:
        """Re-open the run to continue (status back to ``RUNNING``), else create one; store failures raise."""
        from mlflow.exceptions import MlflowException
        from pytorch_lightning.loggers.mlflow import _get_resolve_tags

        if self._run_id is not None:
            try:
                run = client.get_run(self._run_id)
            except MlflowException as exc:
                if is_store_failure(exc):
                    raise
                print(f"medimg: warning: MLflow run {self._run_id} is not in {public_uri(self._tracking_uri)} "
                      f"({exc.error_code}): a new run is started")  # fmt: skip
                self._run_id = None
            else:
                self._experiment_id = run.info.experiment_id
                if run.info.status != "RUNNING":
                    client.update_run(self._run_id, status="RUNNING")
                self._initialized = True
                return self._run_id
        found = client.get_experiment_by_name(self._experiment_name)
        if found is not None and found.lifecycle_stage != "deleted":
            self._experiment_id = found.experiment_id
        else:
            self._experiment_id = client.create_experiment(self._experiment_name, self._artifact_location)
        tags = _get_resolve_tags()(dict(self.tags or {}))
        run = client.create_run(self._experiment_id, tags=tags, run_name=self._run_name)
        self._run_id = run.info.run_id
        self._initialized = True
        return str(self._run_id)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if self.config is None:  # not run by medimg's CLI: the module's hyper-parameters, as Lightning logs them
            super().log_hyperparams(params)
        # else the resolved config is logged by MLflowRunKeeper once the run is open

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._buffer is None:
            return  # nothing was tracked
        from medimg.tasks.preemption import requested

        final = {"success": "FINISHED", "finished": "FINISHED", "failed": "KILLED" if requested() else "FAILED"}
        if self._checkpoint_callback:
            self._scan_and_log_checkpoints(self._checkpoint_callback)
        self.buffer.call("set_terminated", final.get(status, status.upper()))
        self.buffer.drain(self.flush_timeout_s)

    @rank_zero_only
    def save(self) -> None:
        if self._buffer is not None:  # Lightning calls it after every log_metrics: no new try before it is due
            self._buffer.send_if_due()


class MLflowRunKeeper(pl.Callback):
    """Keeps an :class:`MLflowRunLogger` on one run: its run id in every checkpoint, restored on resume; the
    config, tags, attempt and run-folder files logged when training starts and again when it ends.

    ``medimg fit`` adds it for every :class:`MLflowRunLogger`; add it yourself when building a ``Trainer``."""

    def __init__(self, logger: MLflowRunLogger) -> None:
        self.logger = logger
        self.folder: Path | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(experiment=self.logger._experiment_name)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.logger.run_id, "tracking_uri": public_uri(self.logger.tracking_uri)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.logger._run_id is None and state_dict.get("run_id"):
            self.logger._run_id = state_dict["run_id"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.logger.bind(trainer.default_root_dir)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from medimg.tasks.callbacks import run_dir

        self.folder = folder = run_dir(trainer)  # a collective under DDP: every rank calls it
        if trainer.is_global_zero:  # after RunFingerprint (added before this callback) wrote this attempt
            self.logger.buffer.add("run start", functools.partial(_log_start, self.logger, folder))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_files(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._log_files(trainer)

    def _log_files(self, trainer: pl.Trainer) -> None:
        folder = self.folder  # not run_dir(): a collective, which a crash on one rank would never meet
        if folder is not None and trainer.is_global_zero:
            for name in ("fingerprint.json", "run.json"):
                if (folder / name).is_file():
                    self.logger.buffer.call("log_artifact", str(folder / name), folder.name)


def _log_start(logger: MLflowRunLogger, folder: Path, client: Any, run_id: str) -> None:
    """Params, tags and this attempt's tag; the run folder's files as artifacts. Safe to repeat (a store failure
    half-way sends it again): params already in the run are not sent twice."""
    from mlflow.entities import Param, RunTag

    run = client.get_run(run_id)
    fp = _read_json(folder / "fingerprint.json")
    n = 1 + sum(1 for k in run.data.tags if k.startswith("medimg.attempt."))
    attempt = (fp.get("attempts") or [{}])[-1]
    tags = {
        "medimg.git_commit": fp.get("git_commit"),
        "mlflow.source.git.commit": (fp.get("git_commit") or "").removesuffix("-dirty") or None,
        "medimg.dataset_digest": fp.get("dataset_digest"),
        "medimg.version": fp.get("medimg"),
        "medimg.run_folder": str(folder),
        "medimg.attempts": str(n),
        f"medimg.attempt.{n}": json.dumps({k: attempt.get(k) for k in _ATTEMPT_KEYS}),
    }
    params = flatten_config(logger.config or {})
    params.update({k: public_uri(v) for k, v in params.items() if k.endswith("tracking_uri")})
    changed = sorted(k for k, v in params.items() if k in run.data.params and run.data.params[k] != v)
    if changed:
        tags[f"medimg.attempt.{n}.changed_params"] = ", ".join(changed)[:_PARAM_VALUE_MAX]
    new = [Param(k, v) for k, v in params.items() if k not in run.data.params]
    for i in range(0, len(new), 100):
        client.log_batch(run_id, params=new[i : i + 100])
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])
    for path in [folder / "fingerprint.json", folder / "config.yaml"]:
        if path.is_file():
            client.log_artifact(run_id, str(path), folder.name)
    for path in logger.config_files:
        if path.is_file():
            client.log_artifact(run_id, str(path), "config_files")


_ATTEMPT_KEYS = ("scheduler", "job_id", "restart_count", "started", "start_epoch", "start_global_step",
                 "resumed_from")  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
