"""``medimg fit | validate | test``: LightningCLI with medimg's defaults for every run.

What every run gets without configuring it (all can be overridden on the command line or in YAML):

* TensorBoard *and* CSV logs under ``<default_root_dir>/lightning_logs/version_N``; MLflow too with
  ``--trainer.logger medimg.tasks.tracking.MLflowRunLogger`` or ``--config configs/mlflow.yaml``: one MLflow run
  per medimg run across requeues and resumes (:mod:`medimg.tasks.tracking`); trackers given alone get the
  run folder's TensorBoard and CSV logs in front of them,
* ``fingerprint.json`` in that folder (code, versions, GPUs, container, resolved config, dataset digest),
* ``run.json`` in that folder (status on exit, wall time, device-hours, peak memory, epochs:
  :mod:`medimg.tasks.run_record`), which ``medimg runs`` puts side by side with the other runs,
* checkpoints in ``<default_root_dir>/checkpoints``: the best by the task's validation metric and ``last.ckpt``,
  written atomically, so ``--ckpt_path last`` resumes a killed job,
* ``use_distributed_sampler: false``: medimg's sampler shards across DDP ranks itself and is re-seeded per epoch.
* preemption: ``SIGUSR1`` (SLURM's warning before the time limit) saves ``last.ckpt`` at the end of the
  running batch and ends ``fit`` with exit status 75 (:mod:`medimg.tasks.preemption`); under SLURM Lightning's
  own auto-requeue is switched off in favour of it, and ``scripts/slurm_fit.sbatch`` requeues the job,
* the temporary files of checkpoint writes that a hard kill interrupted are removed when ``fit`` starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

__all__ = ["MedimgCLI", "run_cli"]


class MedimgCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
        from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

        from medimg.tasks.callbacks import AtomicCheckpointIO, RunFingerprint
        from medimg.tasks.preemption import RequeueOnSignal
        from medimg.tasks.run_record import RunRecord

        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = Path(cfg["trainer"].get("default_root_dir") or ".")
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        configured = init["trainer"].get("callbacks") or []
        extra: list[Any] = list(configured if isinstance(configured, list) else [configured])
        extra += list(kwargs.pop("callbacks", None) or [])
        monitor, mode = getattr(self.model, "checkpoint_metric", ("val/loss", "min"))
        if not any(isinstance(c, ModelCheckpoint) for c in extra):
            extra.append(
                ModelCheckpoint(
                    dirpath=root / "checkpoints",
                    filename="best-epoch{epoch:03d}",
                    auto_insert_metric_name=False,
                    monitor=monitor,
                    mode=mode,
                    save_last=True,
                )
            )
        extra.append(RunFingerprint(config=self.resolved_config()))
        extra.append(RequeueOnSignal())
        extra.append(RunRecord())
        loggers = _configured_loggers(init["trainer"].get("logger"), cfg["trainer"].get("logger"))
        if loggers is not None and not any(isinstance(lg, (CSVLogger, TensorBoardLogger)) for lg in loggers):
            # the run folder's own logs come first (trainer.log_dir is the first logger's), trackers after them
            tb = TensorBoardLogger(save_dir=root, name="lightning_logs", default_hp_metric=False)
            loggers = [tb, CSVLogger(save_dir=root, name="lightning_logs", version=tb.version), *loggers]
            extra.append(LearningRateMonitor(logging_interval="epoch"))
        if loggers is not None:
            kwargs["logger"] = loggers
            resolved = self.resolved_config()
            run_config = resolved.get(self.subcommand, resolved) if self.subcommand else resolved
            extra += _tracking_callbacks(loggers, run_config, cfg.get("config"))
        plugins = list(kwargs.pop("plugins", None) or [])
        plugins.append(AtomicCheckpointIO())
        plugins += _slurm_environment(plugins)
        return super().instantiate_trainer(callbacks=extra, plugins=plugins, **kwargs)

    def before_fit(self) -> None:
        """Remove what checkpoint writes killed half-way left behind (no process of this run writes yet)."""
        from medimg.tasks.callbacks import remove_partial_checkpoints

        dirs = [getattr(cb, "dirpath", None) for cb in self.trainer.checkpoint_callbacks]
        folders = {Path(d) for d in dirs if d}
        for folder in sorted(folders | {Path(self.trainer.default_root_dir)}):
            remove_partial_checkpoints(folder)

    def resolved_config(self) -> dict[str, Any]:
        """The resolved configuration of this run, as plain data (for the fingerprint)."""
        import yaml

        try:
            loaded: dict[str, Any] = yaml.safe_load(self.parser.dump(self.config, skip_check=True))
            return loaded
        except Exception:  # the dump is for the record only; never fail a run on it
            return {"unserialisable_config": str(self.config)}


def _configured_loggers(instances: Any, configured: Any) -> list[Any] | None:
    """The loggers given (``--trainer.logger``, YAML) as a list: ``[]`` for the default (``None``/``true``), the
    run folder's loggers are added to it; ``None`` for ``--trainer.logger false``."""
    if configured in (None, True) or instances in (None, True):
        return []
    if instances is False:
        return None
    return list(instances) if isinstance(instances, (list, tuple)) else [instances]


def _tracking_callbacks(loggers: list[Any], config: dict[str, Any], config_files: Any) -> list[Any]:
    """For each MLflow logger of medimg (:mod:`medimg.tasks.tracking`): the resolved config and the ``--config``
    files (the plan) to log, and the callback that keeps it on one run."""
    from medimg.tasks.tracking import MLflowRunKeeper, MLflowRunLogger

    keepers: list[Any] = []
    for logger in loggers:
        if isinstance(logger, MLflowRunLogger):
            logger.config = config
            logger.config_files = [Path(str(p)) for p in (config_files or [])]
            keepers.append(MLflowRunKeeper(logger))
    return keepers


def _slurm_environment(plugins: list[Any]) -> list[Any]:
    """Under SLURM, Lightning's SLURM environment without its in-handler auto-requeue (see
    :mod:`medimg.tasks.preemption` for why); nothing when not under SLURM or a cluster environment is given."""
    from lightning_fabric.plugins.environments.cluster_environment import ClusterEnvironment
    from lightning_fabric.plugins.environments.slurm import SLURMEnvironment

    if any(isinstance(p, ClusterEnvironment) for p in plugins) or not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]


def run_cli(args: Sequence[str]) -> int:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``) with medimg's defaults.

    ``args`` is the whole command line. It is placed in ``sys.argv`` for the duration of the run (and the old
    value restored), exactly as if typed in a shell: Lightning's DDP launcher starts the other ranks by re-running
    ``sys.argv``, and in a notebook ``sys.argv`` would otherwise hold the kernel's own arguments.

    Returns 0, or :data:`~medimg.tasks.preemption.EXIT_REQUEUE` (75) when ``fit`` stopped after the warning
    signal with a checkpoint to resume from.
    """
    import sys

    from medimg.tasks import preemption

    saved = sys.argv
    sys.argv = [saved[0] if saved else "medimg", *args]
    handler = bool(args) and args[0] == "fit" and preemption.install_handler()
    try:
        _run()
    except preemption.Preempted as exc:
        print(f"medimg: preempted: {exc}; exit status {preemption.EXIT_REQUEUE}", file=sys.stderr)
        return preemption.EXIT_REQUEUE
    finally:
        sys.argv = saved
        if handler:
            preemption.restore_handler()
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Destroy the default process group a DDP run left (Lightning keeps it after ``fit``): Gloo's worker threads
    still running when the interpreter shuts down end the rank with "terminate called without an active
    exception" (SIGABRT) after a finished fit, which SLURM records as a failed job (seen in the one-node cluster
    test; pytorch/pytorch#190489). Local to this rank, not a collective."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _run() -> None:
    MedimgCLI(
        model_class=pl.LightningModule,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={"use_distributed_sampler": False},
        save_config_kwargs={"overwrite": True},
    )
