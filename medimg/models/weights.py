"""Loading weight files from disk, safely: never unpickling arbitrary code, never downloading."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from medimg.errors import ModelError

__all__ = ["check_compatible", "load_state_dict"]


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.safetensors``, ``.pth``, ``.pt`` or ``.bin`` file.

    ``.safetensors`` goes through safetensors; everything else through ``torch.load(weights_only=True)``, which
    refuses pickled code. Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``, as
    Lightning and MedicalNet write them) are unwrapped, and a DataParallel ``module.`` prefix is removed.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError("weights file not found (medimg never downloads weights implicitly)", p)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors/torch raise many types for a bad file
        raise ModelError(f"cannot read weights ({type(exc).__name__}: {exc})", p) from exc
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError("not a state dict of tensors", p)
    out = {str(k): v for k, v in obj.items()}
    if out and all(k.startswith("module.") for k in out):
        out = {k.removeprefix("module."): v for k, v in out.items()}
    return out


def check_compatible(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | os.PathLike[str] | None = None,
    *,
    may_miss: tuple[str, ...] = (),
) -> None:
    """Raise :class:`ModelError` naming the first key that is missing, unexpected or has the wrong shape.

    Keys starting with one of ``may_miss`` (a re-initialised classifier head) may be absent from ``state``.
    """
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            raise ModelError(f"weights do not fit this architecture: unexpected key {key!r}", source)
        if tuple(own[key].shape) != tuple(value.shape):
            raise ModelError(
                f"weights do not fit this architecture: {key!r} has shape {tuple(value.shape)} in the file but "
                f"{tuple(own[key].shape)} in the model",
                source,
            )
    missing = [
        k
        for k in own
        if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(may_miss or ("\0",))
    ]
    if missing:
        raise ModelError(f"weights do not fit this architecture: missing key {missing[0]!r}", source)
