"""The model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Re-compute the map with the target layer's weights and every layer registered after it re-initialised; if the
map barely changes (high Spearman rank correlation with the original), it reflects the input more than the
trained model, and is flagged as untrustworthy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["SanityResult", "randomisation_check", "randomised_copy", "spearman"]

#: Above this rank correlation between the trained and the randomised map, the map is not trusted.
TRUST_THRESHOLD = 0.5


@dataclass(frozen=True)
class SanityResult:
    correlation: float
    threshold: float
    n_randomised: int

    @property
    def trustworthy(self) -> bool:
        return self.correlation < self.threshold

    def __str__(self) -> str:
        verdict = "passes" if self.trustworthy else "FAILS (map does not depend on the trained weights)"
        return (
            f"randomisation check {verdict}: Spearman rho = {self.correlation:.3f} between the map of the "
            f"trained model and of a copy with {self.n_randomised} layers re-initialised (threshold {self.threshold})"
        )


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (flattened); 0 when either is constant."""
    from scipy.stats import spearmanr

    x, y = a.detach().float().flatten().cpu().numpy(), b.detach().float().flatten().cpu().numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def randomised_copy(model: nn.Module, layer: str, seed: int = 0) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` with ``layer`` and every module registered after it re-initialised."""
    clone = copy.deepcopy(model)
    names = [n for n, _ in clone.named_modules()]
    start = names.index(layer)
    torch.manual_seed(seed)
    count = 0
    for name, module in clone.named_modules():
        if names.index(name) >= start and hasattr(module, "reset_parameters") and name:
            module.reset_parameters()
            count += 1
    return clone, count


def randomisation_check(
    model: nn.Module,
    layer: str,
    compute: Callable[[nn.Module], torch.Tensor],
    original: torch.Tensor | None = None,
    threshold: float = TRUST_THRESHOLD,
) -> SanityResult:
    """Compare ``compute(model)`` with ``compute(randomised copy)``; ``original`` saves one computation."""
    first = compute(model) if original is None else original
    clone, n = randomised_copy(model, layer)
    return SanityResult(spearman(first, compute(clone)), threshold, n)
