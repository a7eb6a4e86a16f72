"""``explain_case``: a checkpoint, an image and a label in; a heatmap volume in the image's geometry out."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import MedimgError, ModelError
from medimg.explain.methods import DEFAULT_METHOD
from medimg.explain.sanity import SanityResult, randomisation_check
from medimg.explain.segmentation import segmentation_cam
from medimg.inference.model import Model, file_sha256
from medimg.io.volume import Volume

__all__ = ["Explanation", "default_layer", "explain_case", "file_sha256", "volume_sha256"]


def volume_sha256(volume: Volume) -> str:
    """Hash of the voxels, their dtype/shape and the affine: identifies the exact input a map was made for."""
    h = hashlib.sha256()
    arr = np.ascontiguousarray(volume.array)
    h.update(f"{arr.dtype}{arr.shape}".encode())
    h.update(arr.tobytes())
    h.update(np.round(volume.affine, 6).tobytes())
    return h.hexdigest()


def default_layer(net: torch.nn.Module) -> str:
    """The default CAM layer of a segmentation net: the last convolution before the output convolution,
    skipping residual shortcuts (1x1 projections whose maps are mostly empty after the ReLU)."""
    from medimg.explain.gradcam import candidate_layers

    layers = [name for name in candidate_layers(net) if "residual" not in name]
    if len(layers) < 2:
        raise MedimgError("the network has too few convolution layers for a CAM; pass layer=...")
    return layers[-2]


@dataclass
class Explanation:
    """A heatmap with everything needed to show it and to tie a radiologist's answer to it."""

    image: Volume
    heatmap: Volume
    prediction: Volume
    label: int
    method: str
    layer: str
    checkpoint_sha256: str
    input_sha256: str
    sanity: SanityResult | None
    label_name: str | None = None

    def save(self, heatmap_path: str | os.PathLike[str]) -> Path:
        """Write the heatmap: NIfTI (``.nii``/``.nii.gz``), or a DICOM Parametric Map (``.dcm``) referencing
        the DICOM series it was computed on (see :func:`medimg.io.derived.parametric_map.write_parametric_map`)."""
        if not Path(heatmap_path).name.lower().endswith(".dcm"):
            return self.heatmap.save(heatmap_path)
        from medimg._version import __version__
        from medimg.io.derived import AlgorithmInfo
        from medimg.io.derived.parametric_map import write_parametric_map

        algorithm = AlgorithmInfo(
            f"medimg {self.method}", __version__, {"checkpoint_sha256": self.checkpoint_sha256, "layer": self.layer}
        )
        return write_parametric_map(
            self.heatmap,
            str(self.image.meta["source"]),
            heatmap_path,
            method=self.method,
            label=self.label,
            layer=self.layer,
            label_name=self.label_name,
            algorithm=algorithm,
        )


def explain_case(
    model: str | os.PathLike[str] | Model,
    image: str | os.PathLike[str],
    label: int = 1,
    *,
    method: str = DEFAULT_METHOD,
    layer: str | None = None,
    region: np.ndarray[Any, Any] | None = None,
    sanity_check: bool = True,
    device: str = "cpu",
) -> Explanation:
    """Explain why ``model`` (a :class:`~medimg.inference.Model`, or a checkpoint path opened once) labelled
    voxels of ``image`` as ``label``.

    Args:
        method: ``hirescam`` (default: keeps *where* in the window the evidence is, which a region of a
            segmentation needs) | ``gradcam`` | ``gradcampp`` | ``occlusion``.
        layer: target layer name (see :func:`medimg.explain.candidate_layers`); default :func:`default_layer`.
        region: optional 0/1 mask in the *input's* voxel grid restricting the target (e.g. one lesion, or
            :func:`medimg.explain.component_at` of the prediction under a clicked voxel). Default: every voxel
            the model labels ``label``.
        sanity_check: run the model-parameter randomisation check (one extra map).

    The heatmap is in [0, 1] (``cam / max``), resampled (linear) onto the input's grid: same shape and affine.
    """
    from medimg.inference.model import open_model

    opened = open_model(model, device=device)
    if opened.module is None:
        raise ModelError("explanations need the network's layers: pass the training checkpoint, not an export")
    net = opened.module.eval()
    original, data = opened.prepare(image)
    layer = layer or default_layer(net)
    x = data.unsqueeze(0).to(device)
    pred = opened.infer(x).argmax(1).float()
    # The target is fixed once, from the trained model: the randomised copy in the sanity check must explain the
    # same voxels (Adebayo et al.), and this prediction need not be recomputed inside segmentation_cam.
    target = (pred == label).float().unsqueeze(1) if region is None else _resample_region(region, original, data)
    compute = _map_of(opened, x, layer, label, target.to(device), method)
    cam = compute(net)
    sanity = randomisation_check(net, layer, compute, original=cam) if sanity_check else None
    heat_meta = {"method": method, "layer": layer, "label": label}
    img, heatmap, prediction = _on_input_grid(cam, pred, original, data, image, heat_meta)
    return Explanation(
        image=img,
        heatmap=heatmap,
        prediction=prediction,
        label=label,
        method=method,
        layer=layer,
        checkpoint_sha256=opened.sha256,
        input_sha256=volume_sha256(img),
        sanity=sanity,
        label_name=opened.class_names.get(label),
    )


def _resample_region(region: np.ndarray[Any, Any], original: Any, data: Any) -> torch.Tensor:
    """A 0/1 ``region`` (X, Y, Z) on the input's grid, resampled (nearest) onto the model's grid of ``data``:
    (1, 1, X', Y', Z')."""
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    src = MetaTensor(torch.as_tensor(region[None], dtype=torch.float32), affine=original.affine, meta={})
    return torch.as_tensor(ResampleToMatch(mode="nearest")(src, img_dst=data)).unsqueeze(0)


def _map_of(
    model: Model, x: torch.Tensor, layer: str, label: int, target: torch.Tensor, method: str
) -> Callable[[torch.nn.Module], torch.Tensor]:
    """The map of ``target`` (1, 1, X', Y', Z') for a given network, with the model's windows: (1, 1, X', Y', Z')."""
    roi, overlap = tuple(model.recipe.roi_size), model.recipe.overlap

    def compute(model: torch.nn.Module) -> torch.Tensor:
        return segmentation_cam(model, x, layer, label, target, method=method, roi_size=roi, overlap=overlap)

    return compute


def _on_input_grid(
    cam: torch.Tensor,
    pred: torch.Tensor,
    original: Any,
    data: Any,
    source: str | os.PathLike[str],
    heat_meta: dict[str, Any],
) -> tuple[Volume, Volume, Volume]:
    """Image, heatmap (linear, clipped to [0, 1]) and prediction (nearest) as Volumes on the input's grid, from
    the (1, 1, X', Y', Z') map and (1, X', Y', Z') labels on the model's grid."""
    from medimg.inference.pipeline import to_input_grid

    affine = np.asarray(original.affine, dtype=np.float64)
    heat = to_input_grid(cam[0], data, original, mode="bilinear").clip(0, 1).astype(np.float32)
    labels = to_input_grid(pred, data, original, mode="nearest").astype(np.uint8)
    return (
        Volume(np.asarray(original[0].numpy()), affine, {"source": str(source)}),
        Volume(heat, affine, heat_meta),
        Volume(labels, affine, {"modality": "SEG"}),
    )
