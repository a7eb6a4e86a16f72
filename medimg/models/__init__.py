"""Networks: single-channel-adapted pretrained backbones (2D, 3D, inflated) and 3D segmentation nets."""

from medimg.models.backbones import BACKBONES_2D, BACKBONES_3D, Backbone, create_backbone, list_backbones
from medimg.models.channels import adapt_input_channels
from medimg.models.inflate import inflate_2d_to_3d
from medimg.models.modes import eval_mode
from medimg.models.segmentation import SEGMENTATION_NETS, segmentation_net
from medimg.models.weights import load_state_dict

__all__ = [
    "BACKBONES_2D",
    "BACKBONES_3D",
    "SEGMENTATION_NETS",
    "Backbone",
    "adapt_input_channels",
    "create_backbone",
    "eval_mode",
    "inflate_2d_to_3d",
    "list_backbones",
    "load_state_dict",
    "segmentation_net",
]
