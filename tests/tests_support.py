"""Shared arguments for the small CPU training runs the tests make."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMALL_FIT = [
    "--config", str(ROOT / "configs" / "seg_unet3d.yaml"),
    "--trainer.accelerator", "cpu",
    "--trainer.check_val_every_n_epoch", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--data.patch_size", "[32, 32, 32]",
    "--data.num_workers", "0",
    "--data.epoch_length", "24",
    "--model.roi_size", "[32, 32, 32]",
    "--model.net_kwargs", "{channels: [8, 16, 32], strides: [2, 2], num_res_units: 1}",
    "--model.lr", "0.01",
]  # fmt: skip
