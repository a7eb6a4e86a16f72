"""The normalisation layers ``medimg adapt`` works on, and the method that applies to a network.

AdaBN needs batch norms with running statistics; TENT needs affine normalisation parameters. The networks
``medimg plan`` makes have neither (MONAI's instance norm without affine), so
:func:`enable_instance_norm_affine` gives their instance norms an identity affine (scale 1, shift 0: the
predictions do not change) for TENT to train, and records it in the task's ``net_kwargs``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medimg.errors import ConfigError

__all__ = ["ADAPT_METHODS", "NORM_KWARG", "batch_norms", "enable_instance_norm_affine", "norm_layers", "pick_method"]

#: the methods ``medimg adapt --method`` offers (``auto``: AdaBN with batch-norm statistics, else TENT)
ADAPT_METHODS = ("auto", "adabn", "tent", "adabn+tent")
#: the keyword of each network's normalisation layer in ``net_kwargs`` (MONAI's names)
NORM_KWARG = {"unet": "norm", "dynunet": "norm_name", "segresnet": "norm", "swinunetr": "norm_name"}


def norm_layers(net: nn.Module) -> list[nn.Module]:
    norms = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)
    return [m for m in net.modules() if isinstance(m, norms)]


def batch_norms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def pick_method(net: nn.Module, method: str) -> str:
    """The method ``"auto"`` stands for on ``net`` (AdaBN with batch-norm running statistics, else TENT); any
    other method as it is."""
    if method not in ADAPT_METHODS:
        raise ConfigError(f"method must be one of {', '.join(ADAPT_METHODS)}, got {method!r}")
    if method != "auto":
        return method
    return "adabn" if batch_norms(net) else "tent"


def _plain_instance_norms(net: nn.Module) -> list[nn.modules.instancenorm._InstanceNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.affine]


def enable_instance_norm_affine(task: Any) -> int:
    """Give every instance norm without affine parameters a scale of 1 and a shift of 0 (so the network predicts
    exactly as before) and record it in ``task.hparams["net_kwargs"]`` (so the checkpoint rebuilds the same
    network); returns how many layers changed. A network whose norm keyword is unknown is refused."""
    plain = _plain_instance_norms(task.net)
    if not plain:
        return 0
    key = NORM_KWARG.get(str(task.hparams.get("net")))
    if key is None:
        raise ConfigError(
            f"cannot give the {task.hparams.get('net')} network affine instance norms: use --method adabn"
        )
    kwargs = dict(task.hparams.get("net_kwargs") or {})
    current = kwargs.get(key, "instance")
    name, args = (current, {}) if isinstance(current, str) else (current[0], dict(current[1]))
    kwargs[key] = [name, {**args, "affine": True}]
    task.hparams["net_kwargs"] = kwargs
    for m in plain:
        device = next(task.net.parameters()).device
        m.affine = True
        m.weight = nn.Parameter(torch.ones(m.num_features, device=device))
        m.bias = nn.Parameter(torch.zeros(m.num_features, device=device))
    return len(plain)
