"""``eval_mode``: run a network in eval mode and leave every module's train/eval flag as the caller had it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from torch import nn

__all__ = ["eval_mode"]

M = TypeVar("M", bound=nn.Module)


@contextmanager
def eval_mode(model: M) -> Iterator[M]:
    """Put ``model`` in eval mode inside the block; on exit restore each module's own flag.

    Each module's flag is saved, not only the top one: a model in training with a frozen (eval) batch-norm
    layer comes back exactly so. Example::

        with eval_mode(net):
            logits = net(x)
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():  # parents come before their children, so each ends with its own flag
            m.train(mode)
