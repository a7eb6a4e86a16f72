"""The inference recipe an exported model carries, so that one file is enough to segment or classify.

An exported network alone gives other masks than its checkpoint (nnU-Net's and MONAI bundles' exports lose
the pre- and post-processing). The :class:`Recipe` is everything ``medimg segment`` / ``medimg classify`` need
besides the weights: the preprocessing (orientation, target spacing, intensity window or normalisation), the
sliding-window settings (ROI, overlap, Gaussian blending), the class names, and where the model came from
(checkpoint SHA-256, medimg version). It travels as JSON: in the ONNX model's ``metadata_props`` and in a
``.pt2`` archive's extra files, under :data:`RECIPE_KEY`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from medimg.errors import ModelError

__all__ = ["RECIPE_FORMAT", "RECIPE_KEY", "Recipe"]

#: metadata key of the recipe (ONNX ``metadata_props``; ``.pt2`` extra file ``<key>.json``)
RECIPE_KEY = "medimg.recipe"
#: version of the recipe's JSON layout; a reader refuses a newer one
RECIPE_FORMAT = 1


@dataclass(frozen=True)
class Recipe:
    """How to run an exported network on an image file.

    Attributes:
        task: ``"segmentation"`` (sliding windows, label map) or ``"classification"`` (class probabilities).
        net: network name (``unet``, ``resnet18``, ...), for provenance.
        in_channels / num_classes: the network's input channels and output classes (background included).
        class_names: label value -> name (segment labels of a DICOM SEG, ``medimg classify``'s rows).
        checkpoint_sha256 / medimg_version: where the weights came from.
        precision: ``"fp32"`` or ``"fp16"`` (the exported network's input and output dtype).
        preprocessing: segmentation only, :class:`~medimg.transforms.Preprocessing` as a dict; the orientation
            is always RAS.
        roi_size / sw_batch_size / overlap / blend: segmentation only, the sliding-window settings of
            :meth:`~medimg.tasks.SegmentationTask.infer` (``blend`` is MONAI's ``mode``: ``"gaussian"``).
        spatial_dims / image_size / intensity / ct_window: classification only, the evaluation transform of
            :class:`~medimg.data.classification.ClassificationDataModule` (resize, then CT window or 0.5-99.5
            percentiles to [0, 1]).
        temperature: the calibration temperature T > 0 the logits are divided by before the softmax wherever
            probabilities are shown (uncertainty maps, risk); fitted on validation logits by
            :func:`medimg.metrics.calibration.fit_temperature`. 1.0 (the default, and what a recipe written before
            it existed reads as) leaves the probabilities unchanged; the label map never depends on it.
    """

    task: Literal["segmentation", "classification"]
    net: str
    in_channels: int
    num_classes: int
    class_names: dict[int, str] = field(default_factory=dict)
    checkpoint_sha256: str = "unknown"
    medimg_version: str = "unknown"
    precision: Literal["fp32", "fp16"] = "fp32"
    preprocessing: dict[str, Any] | None = None
    roi_size: tuple[int, ...] = ()
    sw_batch_size: int = 4
    overlap: float = 0.25
    blend: str = "gaussian"
    spatial_dims: int = 3
    image_size: tuple[int, ...] = ()
    intensity: str = "percentile"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    temperature: float = 1.0

    @property
    def window_shape(self) -> tuple[int, ...]:
        """Spatial shape of one network input: the ROI (segmentation) or the resized image (classification)."""
        return tuple(self.roi_size if self.task == "segmentation" else self.image_size)

    def with_precision(self, precision: Literal["fp32", "fp16"]) -> Recipe:
        return replace(self, precision=precision)

    def to_json(self) -> str:
        d = asdict(self)
        d["format"] = RECIPE_FORMAT
        d["class_names"] = {str(k): v for k, v in self.class_names.items()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> Recipe:
        """Parse a recipe; :class:`~medimg.errors.ModelError` naming ``source`` when it is not one medimg wrote."""
        try:
            d: dict[str, Any] = json.loads(text)
            if not isinstance(d, Mapping):
                raise ValueError("not a JSON object")
            version = int(d.pop("format", 0))
            if version > RECIPE_FORMAT:
                raise ModelError(
                    f"the model's medimg recipe has format {version}, newer than this medimg reads "
                    f"({RECIPE_FORMAT}); upgrade medimg",
                    source,
                )
            d["class_names"] = {int(k): str(v) for k, v in dict(d.get("class_names") or {}).items()}
            for key in ("roi_size", "image_size", "ct_window"):
                if key in d:
                    d[key] = tuple(d[key])
            return cls(**d)
        except ModelError:
            raise
        except (TypeError, ValueError) as exc:
            raise ModelError(f"the model's medimg recipe is damaged ({exc})", source) from exc
