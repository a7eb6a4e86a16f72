"""Lightning training step vs a hand-written loop, and sliding-window inference vs MONAI, side by side.

    .venv/bin/python benchmarks/train_bench.py [--steps 8] [--size 96] [--update-md]

1. Train step: ``SegmentationTask`` (MONAI UNet 16..256, Dice+CE, AdamW) under ``pl.Trainer`` against a plain
   PyTorch loop with the same model, loss, optimiser and the same pre-made batches (2 x 1 x size^3); median
   step time after warm-up. Lightning's time is measured between ``on_train_batch_start`` and
   ``on_train_batch_end``, plus the loop overhead between batches.
2. Sliding-window inference of a 160^3 volume (roi 96^3, 4 windows per batch, overlap 0.25, gaussian):
   ``SegmentationTask.infer`` vs ``monai.inferers.sliding_window_inference`` vs the sum of the bare window
   forwards it runs.
CPU here (2 threads, fp32). On a GPU it also reports bf16 vs fp32 step time and peak memory.
3. ``--ddp``: data-parallel scaling, 1 process vs 2 DDP ranks (gloo on CPU, the cores split between the ranks;
   NCCL on a machine with 2+ GPUs): the same training step as 1., samples/s and scaling efficiency
   (samples/s with N ranks / (N x samples/s with 1)). Each configuration runs in a fresh process; Lightning
   starts the second rank by re-running this script.
4. ``--augment``: cost of the ``scanner_shift`` augmentation preset (issue 17) per training step against the
   default pipeline: both draw 4 patches of 96^3 from a preprocessed 1 x 160 x 160 x 128 volume (CPU, the data
   loader's work per volume), interleaved; the ratio is preset / default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import race, update_section

from medimg.tasks.segmentation import SegmentationTask


def batches(n: int, size: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        img = torch.rand(2, 1, size, size, size, generator=g)
        out.append({"image": img, "label": (img > 0.7).float()})
    return out


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_train_batch_start(self, *args: object) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args: object) -> None:
        self.times.append(time.perf_counter() - self._t)


def lightning_steps(data: list[dict[str, torch.Tensor]], precision: str, device: str) -> tuple[float, float]:
    pl.seed_everything(0, verbose=False)
    task = SegmentationTask(net="unet", net_kwargs={"norm": "batch"})
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator=device, devices=1, max_epochs=1, precision=precision, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0,
        limit_val_batches=0,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    t0 = time.perf_counter()
    trainer.fit(task, train_dataloaders=loader)
    wall = (time.perf_counter() - t0) / len(data)
    return statistics.median(timer.times[2:]), wall


def plain_steps(data: list[dict[str, torch.Tensor]], device: str, dtype: torch.dtype | None) -> float:
    from monai.losses import DiceCELoss

    from medimg.models import segmentation_net

    torch.manual_seed(0)
    net = segmentation_net("unet", norm="batch").to(device).train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    times = []
    for b in data:
        t0 = time.perf_counter()
        x, y = b["image"].to(device), b["label"].to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def sliding_window(size: int, repeats: int) -> tuple[float, float, float, int]:
    from monai.inferers import SlidingWindowInferer, sliding_window_inference

    task = SegmentationTask(net="unet", net_kwargs={"norm": "batch"}, roi_size=(96, 96, 96)).eval()
    x = torch.rand(1, 1, size, size, size)
    windows: list[torch.Tensor] = []

    def recording(batch: torch.Tensor) -> torch.Tensor:
        windows.append(batch)
        return task.net(batch)

    with torch.no_grad():
        SlidingWindowInferer((96, 96, 96), 4, overlap=0.25, mode="gaussian")(x, recording)
    contenders = {
        "ours": lambda: task.infer(x),
        "monai": lambda: sliding_window_inference(x, (96, 96, 96), 4, task.net, overlap=0.25, mode="gaussian"),
        "forwards": lambda: [task.net(w) for w in windows],
    }
    with torch.no_grad():
        t = race(contenders, repeats)
    ours, monai, forwards = t["ours"], t["monai"], t["forwards"]
    return ours, monai, forwards, sum(w.shape[0] for w in windows)


CPU_THREADS = 2  # the cores of this kind of machine, shared by the ranks of a CPU run


def ddp_worker(world: int, steps: int, size: int, out: Path) -> None:
    """One configuration of the scaling benchmark: ``world`` ranks, ``steps`` steps each; rank 0 writes the
    median step time to ``out``. Under DDP Lightning re-runs this script (same arguments) for the other rank."""
    import json

    gpu = torch.cuda.is_available()
    if not gpu:
        torch.set_num_threads(max(1, CPU_THREADS // world))
    pl.seed_everything(0, verbose=False)
    task = SegmentationTask(net="unet", net_kwargs={"norm": "batch"})
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=world, strategy="ddp" if world > 1 else "auto", max_epochs=1,
        precision="32-true", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    # the same pre-made batches for every configuration; the distributed sampler gives each rank its share
    loader = torch.utils.data.DataLoader(batches(steps * world, size), batch_size=None)
    trainer.fit(task, train_dataloaders=loader)
    if trainer.global_rank == 0:
        out.write_text(json.dumps({"world": world, "step": statistics.median(timer.times[2:])}))


def ddp_scaling(steps: int, size: int) -> str:
    import json
    import subprocess
    import tempfile

    gpus = torch.cuda.device_count()
    worlds = [1, 2] if gpus == 0 or gpus >= 2 else [1]
    rows: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in worlds:
            out = Path(tmp) / f"world{world}.json"
            cmd = [sys.executable, __file__, "--ddp-worker", str(world), "--steps", str(steps), "--size", str(size),
                   "--ddp-out", str(out)]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
            rows[world] = json.loads(out.read_text())["step"]
    batch = 2
    cpu = f"CPU, {CPU_THREADS} cores split between the ranks"
    device = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else cpu
    lines = [
        f"DDP scaling, one node ({device}): MONAI UNet 16..256, batch {batch} x 1 x {size}^3 per rank, fp32, "
        f"median of {steps - 2} steps per rank after 2 warm-up steps{'' if gpus else ', gloo'}:",
        "",
        "| ranks | s / step | samples / s | scaling efficiency |",
        "|---|---|---|---|",
    ]
    base = batch / rows[1]
    for world, step in rows.items():
        rate = world * batch / step
        lines.append(f"| {world} | {step:.3f} | {rate:.2f} | {rate / (world * base):.2f} |")
    if len(worlds) == 1:
        lines.append("")
        lines.append("(one GPU: no 2-rank row)")
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/train_bench.py --ddp --update-md`"]
    return "\n".join(lines)


def augmentation_cost(repeats: int) -> str:
    from medimg.transforms.pipelines import SCANNER_SHIFT_RANGES, augmentation

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 160, 160, 128, generator=g)
    item = {"image": image, "label": (image > 0.7).float()}
    lines = [
        "Augmentation per volume (4 patches of 96^3 from a 1 x 160 x 160 x 128 preprocessed volume; CPU, 2 threads; "
        f"median of {repeats} interleaved runs; the machine was shared with other sessions):",
        "",
        "| pipeline | modality ranges | s / volume | ratio to default |",
        "|---|---|---|---|",
    ]
    for modality in ("MR", "CT"):
        pipes = {
            "default": augmentation((96, 96, 96), 4),
            "scanner_shift": augmentation((96, 96, 96), 4, preset="scanner_shift", modality=modality),
        }
        for i, pipe in enumerate(pipes.values()):
            pipe.set_random_state(seed=i)
        t = race({name: (lambda p=pipe: p(dict(item))) for name, pipe in pipes.items()}, repeats)
        if modality == "MR":
            lines.append(f"| default | - | {t['default']:.3f} | 1.00 |")
        lines.append(
            f"| scanner_shift | {modality} ({len(SCANNER_SHIFT_RANGES[modality])} transforms) | "
            f"{t['scanner_shift']:.3f} | {t['scanner_shift'] / t['default']:.2f} |"
        )
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/train_bench.py --augment --update-md`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--update-md", action="store_true")
    ap.add_argument("--ddp", action="store_true", help="only the DDP scaling benchmark (1 vs 2 ranks)")
    ap.add_argument("--augment", action="store_true", help="only the augmentation preset's cost (issue 17)")
    ap.add_argument("--ddp-worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ddp-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.steps, args.size, args.ddp_out)
        return
    if args.augment:
        text = augmentation_cost(max(args.repeats, 9))
        print(text)
        if args.update_md:
            update_section("Augmentation presets (issue 17)", text)
        return
    if args.ddp:
        text = ddp_scaling(args.steps, args.size)
        print(text)
        if args.update_md:
            update_section("DDP scaling on one node (issue 16)", text)
        return
    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = batches(args.steps, args.size)
    lit_step, lit_wall = lightning_steps(data, "32-true", device)
    plain = plain_steps(data, device, None)
    lines = [
        f"Device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU, 2 threads'}; "
        f"torch {torch.__version__}.",
        "",
        f"Train step, MONAI UNet 16..256 (4.8 M params), batch 2 x 1 x {args.size}^3, fp32, median of "
        f"{args.steps - 2} steps after 2 warm-up steps:",
        "",
        "| loop | s / step | ratio to plain loop |",
        "|---|---|---|",
        f"| hand-written PyTorch loop | {plain:.3f} | 1.00 |",
        f"| SegmentationTask under pl.Trainer (batch start -> end) | {lit_step:.3f} | {lit_step / plain:.3f} |",
        f"| SegmentationTask under pl.Trainer (fit wall time / steps, incl. setup) | {lit_wall:.3f} | "
        f"{lit_wall / plain:.3f} |",
    ]
    ours, monai, forwards, n_windows = sliding_window(160, args.repeats)
    lines += [
        "",
        f"Sliding-window inference, 160^3 volume, roi 96^3, 4 per batch, overlap 0.25, gaussian ({n_windows} windows):",
        "",
        "| inference | s | ratio |",
        "|---|---|---|",
        f"| medimg SegmentationTask.infer | {ours:.3f} | 1.00 |",
        f"| monai sliding_window_inference | {monai:.3f} | MONAI / medimg = {monai / ours:.2f} |",
        f"| sum of the bare window forwards | {forwards:.3f} | medimg / forwards = {ours / forwards:.2f} |",
    ]
    if device == "cuda":
        for precision, dtype in (("32-true", None), ("bf16-mixed", torch.bfloat16)):
            torch.cuda.reset_peak_memory_stats()
            step = plain_steps(data, device, dtype)
            lines.append(
                f"| plain loop {precision} | {step:.4f} s | peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB |"
            )
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/train_bench.py --update-md`"]
    text = "\n".join(lines)
    print(text)
    if args.update_md:
        update_section("Training and inference (issue 5)", text)


if __name__ == "__main__":
    main()
