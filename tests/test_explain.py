"""Heatmaps on a model trained in the test, classifier CAMs, hooks, rendering orientation, sanity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
from tests_support import SMALL_FIT

from medimg.data.phantoms import make_phantom_msd
from medimg.errors import ConfigError, ModelError
from medimg.explain import GradCAM, candidate_layers, class_score, component_at, explain_case, occlusion_map
from medimg.io import Volume, load
from medimg.models import create_backbone
from medimg.tasks.lightning_cli import run_cli
from medimg.viz.planes import slice_2d

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    data = make_phantom_msd(root / "Task98", n_cases=6, n_test=1, seed=5)
    out = root / "run"
    run_cli(["fit", *SMALL_FIT, "--data.dataset_dir", str(data), "--trainer.max_epochs", "3",
             "--trainer.default_root_dir", str(out)])  # fmt: skip
    return out / "checkpoints" / "last.ckpt", data


def test_segmentation_heatmap_sits_on_the_target(trained):
    ckpt, data = trained
    image = data / "imagesTs" / "Phantom_006.nii.gz"
    truth = np.asarray(load(data / "labelsTs" / "Phantom_006.nii.gz").array) > 0
    ex = explain_case(ckpt, image, 1)
    src = load(image)
    assert ex.heatmap.shape == src.shape
    np.testing.assert_allclose(ex.heatmap.affine, src.affine, atol=1e-5)
    h = np.asarray(ex.heatmap.array, dtype=np.float64)
    assert h.min() >= 0.0 and h.max() == pytest.approx(1.0, abs=1e-3)
    near = binary_dilation(truth, iterations=3)  # the organ grown by 3 voxels (4.5-6 mm)
    fraction = h[near].sum() / h.sum()
    assert fraction >= 0.6, fraction  # most of the map's mass lies on or next to the organ ...
    assert near.mean() < 0.1  # ... which is under a tenth of the volume, so the fraction means something
    assert ex.sanity is not None and ex.sanity.trustworthy
    assert len(ex.checkpoint_sha256) == 64 and len(ex.input_sha256) == 64


def test_randomised_model_gives_a_different_map(trained):
    ckpt, data = trained
    from medimg.explain.sanity import randomisation_check
    from medimg.explain.segmentation import segmentation_cam
    from medimg.inference.model import model_from_task
    from medimg.tasks.checkpoint import load_task

    task = load_task(ckpt)
    _, x = model_from_task(task).prepare(data / "imagesTs" / "Phantom_006.nii.gz")
    x = x.unsqueeze(0)
    from medimg.explain import default_layer

    layer = default_layer(task.net)

    with torch.no_grad():
        target = (task.infer(x).argmax(1, keepdim=True) == 1).float()  # fixed: the trained model's organ

    def compute(model):
        return segmentation_cam(model, x, layer, 1, target, method="hirescam", roi_size=(32, 32, 32))

    trained_map = compute(task.net)
    randomised = randomisation_check(task.net, layer, compute, original=trained_map)
    same = randomisation_check(task.net, layer, lambda m: trained_map, original=trained_map)  # a map blind to weights
    assert randomised.correlation < 0.5 < same.correlation
    assert not same.trustworthy


def test_region_restricts_the_target(trained):
    ckpt, data = trained
    image = data / "imagesTs" / "Phantom_006.nii.gz"
    ex = explain_case(ckpt, image, 1, sanity_check=False)
    pred = np.asarray(ex.prediction.array)
    voxel = tuple(int(v) for v in np.argwhere(pred == 1)[0])
    region = component_at(pred, voxel, 1)
    for method in ("gradcam", "gradcampp", "occlusion"):
        ex2 = explain_case(ckpt, image, 1, region=region, sanity_check=False, method=method)
        assert ex2.heatmap.shape == ex.heatmap.shape and ex2.method == method
        assert float(np.asarray(ex2.heatmap.array).max()) <= 1.0
    with pytest.raises(ConfigError, match="not labelled"):
        component_at(pred, (0, 0, 0), 1)


@pytest.mark.parametrize(
    ("name", "dims", "shape"),
    [("resnet18", 2, (2, 1, 64, 64)), ("efficientnet_b0", 2, (1, 1, 64, 64)), ("resnet10", 3, (1, 1, 32, 32, 32))],
)
def test_classifier_cams_have_the_input_shape_and_hooks_go_away(name, dims, shape):
    model = create_backbone(name, num_classes=3, spatial_dims=dims).train()
    layer = candidate_layers(model)[-1]
    target = dict(model.named_modules())[layer]
    before = (len(target._forward_hooks), model.training)
    x = torch.rand(shape)
    for method in ("gradcam", "gradcampp", "hirescam"):
        with GradCAM(model, layer, method) as cam:  # type: ignore[arg-type]
            heat = cam(x, class_score(2))
            assert not model.training  # eval inside
        assert tuple(heat.shape) == (shape[0], 1, *shape[2:])
        assert float(heat.min()) >= 0 and float(heat.max()) <= 1 + 1e-6
    assert (len(target._forward_hooks), model.training) == before  # hooks removed, train mode restored
    occ = occlusion_map(model, x[:1], class_score(2), mask_size=16)
    assert tuple(occ.shape) == (1, 1, *shape[2:])
    assert model.training


def test_unknown_layer_lists_candidates():
    model = create_backbone("resnet18", num_classes=2)
    with pytest.raises(ModelError, match="layer4"):
        GradCAM(model, "layer9")


def test_display_follows_the_radiological_convention():
    # a marker on the patient's right (high RAS x), anterior (high y) and superior (high z)
    arr = np.zeros((10, 12, 14), dtype=np.float32)
    arr[8, 10, 12] = 1
    ras = Volume(arr, np.eye(4)).array
    axial = slice_2d(ras, "axial", 12)
    r, c = np.argwhere(axial == 1)[0]
    assert c < axial.shape[1] / 2  # patient's right on the image's left
    assert r < axial.shape[0] / 2  # anterior at the top
    coronal = slice_2d(ras, "coronal", 10)
    r, c = np.argwhere(coronal == 1)[0]
    assert c < coronal.shape[1] / 2 and r < coronal.shape[0] / 2  # right on left, superior on top


def test_the_cli_offers_exactly_the_registered_methods_with_the_same_default():
    from medimg.cli import build_parser
    from medimg.explain.methods import DEFAULT_METHOD, METHOD_NAMES

    explain = build_parser()._subparsers._group_actions[0].choices["explain"]  # type: ignore[union-attr]
    (method,) = [a for a in explain._actions if a.dest == "method"]
    assert tuple(method.choices) == METHOD_NAMES and method.default == DEFAULT_METHOD
