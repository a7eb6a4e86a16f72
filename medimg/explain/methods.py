"""The explanation methods of a segmentation, in one registry: each turns a window (image channel + target
region channel) into a map of what drove the region's score. CAM methods (Grad-CAM, Grad-CAM++, HiResCAM) share
one :class:`~medimg.explain.gradcam.GradCAM` template and its hooks; occlusion joins as one more entry, so no
caller branches on the method's name. The default and the names are spelled here once (the CLI's choices, the
reading session's and the batch job's defaults all read them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

import torch
from torch import nn

from medimg.errors import ModelError
from medimg.explain.gradcam import GradCAM, region_score
from medimg.explain.occlusion import occlusion_map

__all__ = ["DEFAULT_METHOD", "EXPLAIN_METHODS", "METHOD_NAMES", "WindowMap", "window_maps"]

#: (N, 2, *roi) image + 0/1 region -> (N, 1, *roi) map, not normalised.
WindowMap = Callable[[torch.Tensor], torch.Tensor]
#: (net, layer, label, roi_size) -> a context in which the window map can run (hooks held for its lifetime).
MethodFactory = Callable[[nn.Module, str, int, tuple[int, ...]], AbstractContextManager[WindowMap]]


@contextmanager
def _cam(method: str, net: nn.Module, layer: str, label: int, roi_size: tuple[int, ...]) -> Iterator[WindowMap]:
    """A CAM of the region's score (a window without region voxels gives zeros)."""
    with GradCAM(net, layer, method) as cam:  # type: ignore[arg-type]

        def window_map(window: torch.Tensor) -> torch.Tensor:
            x, r = window[:, :1], window[:, 1:2]
            if not torch.any(r > 0):
                return torch.zeros_like(x)
            return cam(x, region_score(label, r), normalise=False)

        yield window_map


@contextmanager
def _occlusion(net: nn.Module, layer: str, label: int, roi_size: tuple[int, ...]) -> Iterator[WindowMap]:
    """Occlusion sensitivity of the region's score (``layer`` is not used: occlusion needs only the output)."""

    def window_map(window: torch.Tensor) -> torch.Tensor:
        x, r = window[:, :1], window[:, 1:2]
        with torch.no_grad():
            return occlusion_map(net, x, region_score(label, r), mask_size=max(4, roi_size[0] // 6))

    yield window_map


#: The methods by name, the default first.
EXPLAIN_METHODS: dict[str, MethodFactory] = {
    "hirescam": partial(_cam, "hirescam"),
    "gradcam": partial(_cam, "gradcam"),
    "gradcampp": partial(_cam, "gradcampp"),
    "occlusion": _occlusion,
}
#: HiResCAM keeps *where* in the window the evidence is, which a region of a segmentation needs.
DEFAULT_METHOD = "hirescam"
METHOD_NAMES = tuple(EXPLAIN_METHODS)


def window_maps(
    method: str, net: nn.Module, layer: str, label: int, roi_size: tuple[int, ...]
) -> AbstractContextManager[WindowMap]:
    """The window map of ``method`` (a name in :data:`EXPLAIN_METHODS`), as a context holding its hooks."""
    if method not in EXPLAIN_METHODS:
        raise ModelError(f"method must be one of {', '.join(METHOD_NAMES)}, got {method!r}")
    return EXPLAIN_METHODS[method](net, layer, label, roi_size)
