"""Heatmaps a radiologist can check: Grad-CAM(++) for classifiers and segmentations, occlusion, sanity checks."""

from medimg.explain.api import Explanation, default_layer, explain_case
from medimg.explain.gradcam import GradCAM, candidate_layers, class_score, normalise_cam, region_score
from medimg.explain.occlusion import occlusion_map
from medimg.explain.sanity import SanityResult, randomisation_check
from medimg.explain.segmentation import component_at, segmentation_cam

__all__ = [
    "Explanation",
    "GradCAM",
    "SanityResult",
    "candidate_layers",
    "class_score",
    "component_at",
    "default_layer",
    "explain_case",
    "normalise_cam",
    "occlusion_map",
    "randomisation_check",
    "region_score",
    "segmentation_cam",
]
