"""medimg.models: the single-channel rule, inflation, weights loading, and shape tables."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from medimg.errors import ModelError
from medimg.models import adapt_input_channels, create_backbone, eval_mode, segmentation_net
from medimg.models.backbones import BACKBONES_2D

torch.set_num_threads(2)

# one per family; small input sizes keep the suite fast on 2 cores
FAMILIES = [
    ("resnet18", {}, 64),
    ("densenet121", {}, 64),
    ("efficientnet_b0", {}, 64),
    ("convnext_atto", {}, 64),
    ("vit_tiny", {"img_size": 64}, 64),
]


def _rgb_weights(tmp_path, name, kwargs, fmt):
    torch.manual_seed(0)
    rgb = create_backbone(name, num_classes=5, in_channels=3, normalize=False, **kwargs).eval()
    path = tmp_path / f"{name}.{fmt}"
    state = {k: v.contiguous() for k, v in rgb.net.state_dict().items()}
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return rgb, path


@pytest.mark.parametrize(("name", "kwargs", "size"), FAMILIES)
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_gray_model_equals_rgb_model_on_repeated_gray(tmp_path, name, kwargs, size, fmt, caplog):
    rgb, path = _rgb_weights(tmp_path, name, kwargs, fmt)
    with caplog.at_level(logging.INFO, logger="medimg"):
        gray = create_backbone(name, num_classes=5, in_channels=1, weights=path, normalize=False, **kwargs).eval()
    assert any("3 -> 1 input channels (summed kernels)" in r.message for r in caplog.records)
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        diff = (gray(x) - rgb(x.repeat(1, 3, 1, 1))).abs().max().item()
    assert diff <= 1e-5


def test_default_normalisation_uses_the_mean_rgb_statistics(tmp_path):
    # the README's claim, both halves: exact with normalize=False (above); with the default in-model normalisation
    # the gray model is the RGB net fed the gray image normalised with the *mean* RGB statistics (timm's rule) ...
    rgb, path = _rgb_weights(tmp_path, "resnet18", {}, "pth")
    gray = create_backbone("resnet18", num_classes=5, in_channels=1, weights=path).eval()
    mean, std = gray.get_buffer("mean"), gray.get_buffer("std")
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        exact = (gray(x) - rgb(((x - mean) / std).repeat(1, 3, 1, 1))).abs().max().item()
        rgb_normalised = create_backbone("resnet18", num_classes=5, in_channels=3, weights=path).eval()
        differs = (gray(x) - rgb_normalised(x.repeat(1, 3, 1, 1))).abs().max().item()
    assert exact <= 1e-5
    assert differs > 1e-4  # ... so not the RGB net with its own per-channel statistics


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [("resnet18", {}, (1, 1, 64, 64)), ("resnet10", {"spatial_dims": 3}, (1, 1, 32, 32, 32))],
)
def test_saved_backbone_weights_load_back(tmp_path, name, kwargs, shape):
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=3, **kwargs).eval()
    torch.save(model.state_dict(), tmp_path / "mine.pth")  # medimg's own layout: keys "net.*"
    assert all(k.startswith("net.") for k in torch.load(tmp_path / "mine.pth", weights_only=True))
    torch.manual_seed(1)
    again = create_backbone(name, num_classes=3, weights=tmp_path / "mine.pth", **kwargs).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_3d_kernels_follow_the_channel_rule(tmp_path):
    w = torch.randn(8, 3, 3, 5, 7)  # (O, I, D, H, W)
    torch.testing.assert_close(adapt_input_channels(w, 1), w.sum(1, keepdim=True))
    torch.testing.assert_close(adapt_input_channels(w, 5), torch.cat([w, w[:, :2]], dim=1) * 3 / 5)
    # end to end: a 3-channel 3D ResNet's weights in a 1-channel one give its output on the gray volume x 3
    torch.manual_seed(0)
    rgb = create_backbone("resnet10", num_classes=2, in_channels=3, spatial_dims=3).eval()
    torch.save(rgb.net.state_dict(), tmp_path / "rgb3d.pth")
    gray = create_backbone("resnet10", num_classes=2, spatial_dims=3, weights=tmp_path / "rgb3d.pth").eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert (gray(x) - rgb(x.repeat(1, 3, 1, 1, 1))).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    ("name", "kwargs", "stage"),
    [("resnet18", {}, "net.layer4"), ("densenet121", {}, "net.features.norm5"), ("resnet10", {"spatial_dims": 3},
     "net.layer4")],
)  # fmt: skip
def test_last_stage_names_a_layer(name, kwargs, stage):
    model = create_backbone(name, num_classes=2, **kwargs)
    assert model.last_stage == stage and stage in dict(model.named_modules())


def test_normalisation_is_single_channel():
    model = create_backbone("resnet18", num_classes=2)
    assert tuple(model.get_buffer("mean").shape) == (1, 1, 1, 1)
    assert model.get_buffer("mean").item() == pytest.approx((0.485 + 0.456 + 0.406) / 3)
    assert model.get_buffer("std").item() == pytest.approx((0.229 + 0.224 + 0.225) / 3)


def test_rgb_to_k_channels_rule():
    w = torch.randn(8, 3, 3, 3)
    w5 = adapt_input_channels(w, 5)
    assert w5.shape == (8, 5, 3, 3)
    torch.testing.assert_close(w5, torch.cat([w, w[:, :2]], dim=1) * 3 / 5)  # cyclic repeat, scaled by 3/k
    torch.testing.assert_close(adapt_input_channels(w, 1), w.sum(1, keepdim=True))


def test_head_of_another_size_is_reinitialised(tmp_path):
    _, path = _rgb_weights(tmp_path, "resnet18", {}, "pth")
    model = create_backbone("resnet18", num_classes=3, weights=path)
    assert model.net.fc.out_features == 3


def test_mismatching_weights_name_the_key_and_shapes(tmp_path):
    _, path = _rgb_weights(tmp_path, "resnet18", {}, "pth")
    with pytest.raises(ModelError, match=r"missing key 'layer1\.2\.conv1\.weight'"):
        create_backbone("resnet34", num_classes=5, weights=path)  # resnet18 weights in a deeper net: first gap named
    state = torch.load(path, weights_only=True)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"'layer1\.0\.conv1\.weight' has shape \(64, 64, 5, 5\)"):
        create_backbone("resnet18", num_classes=5, weights=tmp_path / "bad.pth")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"conv1.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="cannot read weights"):
        create_backbone("resnet18", num_classes=2, weights=tmp_path / "evil.pth")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ModelError, match="resnet18, resnet34"):
        create_backbone("resnet19", num_classes=2)
    with pytest.raises(ModelError, match="unet, dynunet, segresnet, swinunetr"):
        segmentation_net("vnet3000")


def test_wrong_channel_count_is_a_clear_error():
    model = create_backbone("resnet18", num_classes=2)
    with pytest.raises(ModelError, match=r"expects input \(N, 1, H, W\), got shape \(1, 3, 32, 32\)"):
        model(torch.rand(1, 3, 32, 32))


def test_inflated_3d_model_matches_2d_on_depth_constant_volume(tmp_path):
    torch.manual_seed(1)
    _, path = _rgb_weights(tmp_path, "resnet18", {}, "pth")
    m2d = create_backbone("resnet18", num_classes=5, weights=path, normalize=False).eval()
    m3d = create_backbone(
        "resnet18", num_classes=5, spatial_dims=3, weights=path, inflate_from_2d=True, normalize=False
    ).eval()
    x = torch.rand(2, 1, 48, 48)
    vol = x.unsqueeze(2).repeat(1, 1, 16, 1, 1)  # (N, C, D, H, W), constant along depth
    with torch.no_grad():
        diff = (m3d(vol) - m2d(x)).abs().max().item()
    assert diff <= 1e-4  # documented tolerance: float32 sums of `depth` copies
    conv = m3d.net.layer1[0].conv1
    assert tuple(conv.weight.shape) == (64, 64, 3, 3, 3)


def test_inflation_refuses_unsupported_layers():
    with pytest.raises(ModelError, match="ResNet family"):
        create_backbone("convnext_atto", num_classes=2, spatial_dims=3, inflate_from_2d=True)


def test_medicalnet_style_3d_weights_load(tmp_path):
    ref = create_backbone("resnet10", num_classes=2, spatial_dims=3)
    state = {f"module.{k}": v for k, v in ref.net.state_dict().items() if not k.startswith("fc.")}
    state["module.conv_seg.0.weight"] = torch.zeros(2, 512, 1, 1, 1)  # MedicalNet's segmentation head
    torch.save({"state_dict": state}, tmp_path / "resnet_10.pth")
    model = create_backbone("resnet10", num_classes=3, spatial_dims=3, weights=tmp_path / "resnet_10.pth")
    torch.testing.assert_close(model.net.conv1.weight, ref.net.conv1.weight)


# (name, kwargs, input shape, output shape): every backbone and segmentation net, 1 channel
BACKBONE_SHAPES = [
    ("resnet18", {"num_classes": 4}, (2, 1, 64, 64), (2, 4)),
    ("resnet50", {"num_classes": 4}, (1, 1, 64, 64), (1, 4)),
    ("densenet121", {"num_classes": 3}, (1, 1, 64, 64), (1, 3)),
    ("efficientnet_b0", {"num_classes": 2}, (1, 1, 64, 64), (1, 2)),
    ("convnext_atto", {"num_classes": 2}, (1, 1, 64, 64), (1, 2)),
    ("vit_tiny", {"num_classes": 2, "img_size": 64}, (1, 1, 64, 64), (1, 2)),
    ("resnet10", {"num_classes": 2, "spatial_dims": 3}, (1, 1, 32, 32, 32), (1, 2)),
    ("resnet18", {"num_classes": 2, "spatial_dims": 3}, (1, 1, 32, 32, 32), (1, 2)),
    ("resnet18", {"num_classes": 2, "spatial_dims": 3, "inflate_from_2d": True}, (1, 1, 16, 32, 32), (1, 2)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape", "expected"), BACKBONE_SHAPES)
def test_backbone_shapes(name, kwargs, shape, expected):
    model = create_backbone(name, **kwargs).eval()
    with torch.no_grad():
        assert tuple(model(torch.rand(shape)).shape) == expected


SEG_SHAPES = [
    ("unet", {"channels": (8, 16, 32), "strides": (2, 2)}, (1, 1, 32, 32, 32), (1, 2, 32, 32, 32)),
    ("unet", {"out_channels": 4, "spatial_dims": 2}, (1, 1, 64, 64), (1, 4, 64, 64)),
    ("dynunet", {"filters": (8, 16, 32, 64, 64)}, (1, 1, 32, 32, 32), (1, 2, 32, 32, 32)),
    ("segresnet", {"init_filters": 8}, (1, 1, 32, 32, 32), (1, 2, 32, 32, 32)),
    ("swinunetr", {"feature_size": 12, "out_channels": 3}, (1, 1, 64, 64, 64), (1, 3, 64, 64, 64)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape", "expected"), SEG_SHAPES)
def test_segmentation_net_shapes(name, kwargs, shape, expected):
    net = segmentation_net(name, **kwargs).eval()
    with torch.no_grad():
        assert tuple(net(torch.rand(shape)).shape) == expected


def test_dynunet_deep_supervision_stacks_heads_in_training():
    net = segmentation_net("dynunet", filters=(8, 16, 32, 64, 64), deep_supervision=True, deep_supr_num=2).train()
    assert tuple(net(torch.rand(1, 1, 32, 32, 32)).shape) == (1, 3, 2, 32, 32, 32)


def test_every_listed_2d_name_builds():
    assert set(BACKBONES_2D) >= {"resnet18", "densenet121", "efficientnet_b0", "convnext_tiny", "vit_small"}


def test_eval_mode_restores_every_module_flag():
    model = create_backbone("resnet18", num_classes=2).train()
    model.net.bn1.eval()  # a frozen batch-norm inside a training model
    before = {name: m.training for name, m in model.named_modules()}
    with eval_mode(model) as same:
        assert same is model and not any(m.training for m in model.modules())
    assert {name: m.training for name, m in model.named_modules()} == before
    with pytest.raises(ModelError), eval_mode(model):
        model(torch.rand(1, 3, 32, 32))  # wrong channel count: the flags come back on an error too
    assert {name: m.training for name, m in model.named_modules()} == before
