"""The memory and time of one training step, measured with a dry forward/backward on the target device.

* ``cuda``: a real forward, Dice+CE loss, backward and AdamW step on random data; the memory is
  ``torch.cuda.max_memory_allocated`` (weights, gradients, optimiser state and the activations autograd saves).
* ``cpu``: a real step for the time (the fastest of :data:`TIMED_STEPS`, after a warm-up: on a shared machine
  the other processes only ever add time). The memory is counted, not read from the process: every tensor
  autograd saves for backward passes through ``torch.autograd.graph.saved_tensors_hooks`` (counted once per
  storage), plus weights, gradients and AdamW's two moments. The forward for that count runs on PyTorch's meta
  device (tensors with shapes and no data: milliseconds). ``tracemalloc`` would see none of it (torch
  allocates outside Python's allocator) and the process's RSS moves with the allocator's caching, not the patch.
* ``meta``: only that count: a GPU plan's memory measured on a machine without a GPU, with no time.

A timed measurement also times one inference forward of the same batch (eval mode, no gradients): the plan
prices its sliding-window validations with it.

Lightning's ``Tuner.scale_batch_size`` is not used: it finds the batch size by doubling until the run fails with
an out-of-memory error, which on a CPU means exhausting the machine's RAM (swap, the OOM killer) rather than
respecting a budget, and it only scales the batch, while the plan must trade patch size against batch size
against a budget that need not be the whole device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Measurement", "measure_step"]

#: bytes of optimiser-side state per parameter byte: the weight, its gradient, AdamW's two moments
PARAM_COPIES = 4
#: timed steps after one warm-up step (the fastest is kept)
TIMED_STEPS = 3


@dataclass(frozen=True)
class Measurement:
    """Bytes and seconds of one training step; ``infer_s``: seconds of one no-grad forward of the same batch."""

    memory_bytes: float
    step_s: float
    infer_s: float = 0.0


def _net(name: str, kwargs: dict[str, Any], in_ch: int, out_ch: int) -> torch.nn.Module:
    from medimg.models.segmentation import segmentation_net

    return segmentation_net(name, in_channels=in_ch, out_channels=out_ch, **kwargs)


def _counted_memory(net: torch.nn.Module, x: torch.Tensor) -> float:
    seen: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (str(t.device), id(t.untyped_storage()) if t.device.type == "meta" else t.untyped_storage().data_ptr())
        seen[key] = max(seen.get(key, 0), t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x)
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    return float(sum(seen.values()) + PARAM_COPIES * params + 2 * out.numel() * out.element_size())


def measure_step(
    name: str,
    kwargs: dict[str, Any],
    in_channels: int,
    out_channels: int,
    patch: Sequence[int],
    batch: int,
    device: str,
    *,
    timed: bool = True,
    repeats: int = TIMED_STEPS,
    time_inference: bool = True,
) -> Measurement:
    """Memory (bytes) and seconds of one training step of ``batch`` patches of ``patch`` voxels: the fastest of
    ``repeats`` timed steps after a warm-up, and (``time_inference``) of as many inference forwards."""
    from monai.losses import DiceCELoss

    shape = (batch, in_channels, *patch)
    net = _net(name, kwargs, in_channels, out_channels).train()
    if device in ("meta", "cpu"):
        with torch.device("meta"):
            meta_x = torch.zeros(shape)
        memory = _counted_memory(_net(name, kwargs, in_channels, out_channels).to("meta").train(), meta_x)
        if device == "meta" or not timed:
            return Measurement(memory, 0.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    y = torch.randint(0, out_channels, (batch, 1, *patch), generator=g).float()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    if device == "cuda":
        net, x, y = net.cuda(), x.cuda(), y.cuda()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    times = []
    for i in range(1 + (repeats if timed else 0)):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - t0)
    infer = []
    if timed and time_inference:
        net.eval()
        with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                infer.append(time.perf_counter() - t0)
    if device == "cuda":
        memory = float(torch.cuda.max_memory_allocated())
        del net, x, y, opt
        torch.cuda.empty_cache()
    return Measurement(memory, min(times) if times else 0.0, min(infer) if infer else 0.0)
