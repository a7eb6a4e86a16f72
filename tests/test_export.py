"""medimg export / segment MODEL.onnx / classify: parity with the checkpoint, streamed blending, no Lightning."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.cli import main
from medimg.data.phantoms import phantom_case
from medimg.errors import ModelError
from medimg.export import Recipe, export_checkpoint, export_network, load_exported
from medimg.inference.blending import sliding_window_labels
from medimg.io import Volume, load
from medimg.models import create_backbone, segmentation_net
from medimg.tasks.metrics import dice_per_class

ROOT = Path(__file__).resolve().parents[1]
PREP = {"spacing": [1.5, 1.5, 2.0], "intensity": "ct", "ct_window": [-200, 300], "crop_foreground": False,
        "patch_size": [32, 32, 32]}  # fmt: skip
SMALL_NETS = {
    "unet": {"channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 1},
    "dynunet": {"kernel_size": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "filters": (8, 16, 32)},
    "segresnet": {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
}


def save_checkpoint(task: torch.nn.Module, path: Path) -> Path:
    """Write ``task`` as Lightning writes checkpoints (Trainer.save_checkpoint), without a training run."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.strategy.connect(task)  # type: ignore[arg-type]
    trainer.save_checkpoint(path)
    return path


def seg_recipe(net: str, **kw: object) -> Recipe:
    return Recipe(task="segmentation", net=net, in_channels=1, num_classes=3, preprocessing=PREP, roi_size=(32, 32, 32),
                  sw_batch_size=2, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    """A CT phantom (one organ in a body) on a grid other than the model's spacing, and its 2-volume copy."""
    folder = tmp_path_factory.mktemp("case")
    image, _ = phantom_case(np.random.default_rng(1), shape=(44, 40, 30), spacing=(1.2, 1.4, 2.5))
    two = Volume(np.stack([np.asarray(image.array)] * 2, axis=-1), image.affine)
    return {"image": image.save(folder / "ct.nii.gz"), "two": two.save(folder / "two_volumes.nii.gz")}


@pytest.fixture(scope="module")
def unet(tmp_path_factory) -> dict[str, Path]:
    """A 3-class UNet SegmentationTask checkpoint (random weights: both exports must follow them exactly), its
    ONNX export and the export's figures."""
    from medimg.tasks.segmentation import SegmentationTask

    folder = tmp_path_factory.mktemp("unet")
    torch.manual_seed(0)
    task = SegmentationTask(net="unet", net_kwargs=SMALL_NETS["unet"], num_classes=3, roi_size=(32, 32, 32),
                            sw_batch_size=2, preprocessing=PREP)  # fmt: skip
    ckpt = save_checkpoint(task, folder / "unet.ckpt")
    report = export_checkpoint(ckpt, folder / "unet.onnx")
    return {"ckpt": ckpt, "onnx": report.path, "diff": max(report.max_abs_diff.values())}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("net", "fmt", "precision", "tolerance"),
    [("dynunet", "onnx", "fp32", 1e-4), ("segresnet", "onnx", "fp32", 1e-4), ("unet", "pt2", "fp32", 1e-4),
     ("unet", "onnx", "fp16", 5e-2)],
)  # fmt: skip
def test_segmentation_nets_export_with_dynamic_windows(tmp_path, net, fmt, precision, tolerance):
    torch.manual_seed(0)
    model = segmentation_net(net, in_channels=1, out_channels=3, **SMALL_NETS[net]).eval()
    report = export_network(model, seg_recipe(net), tmp_path / f"m.{fmt}", fmt=fmt, precision=precision)
    assert max(report.max_abs_diff.values()) <= tolerance
    exported = load_exported(report.path)
    assert exported.recipe.precision == precision and exported.recipe.roi_size == (32, 32, 32)
    x = torch.rand(3, 1, 48, 32, 64)  # another batch size and window shape than the export's example
    with torch.no_grad():
        ref = model(x)
        diff = float((exported.predictor(x) - ref).abs().max())
    assert diff <= tolerance * (1 if precision == "fp32" else float(ref.abs().max()))


def test_unet_checkpoint_export_meets_the_fp32_tolerance(unet):
    assert unet["diff"] <= 1e-4  # type: ignore[operator]


def test_swinunetr_is_refused_with_the_reason(tmp_path):
    net = segmentation_net("swinunetr", in_channels=1, out_channels=2, feature_size=12)
    with pytest.raises(ModelError, match="_check_input_size"):
        export_network(net, seg_recipe("swinunetr"), tmp_path / "swin.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "dims", "size"), [("resnet18", 2, (64, 64)), ("resnet10", 3, (32, 32, 32))])
def test_classifiers_export_and_classify(tmp_path, capsys, name, dims, size):
    torch.manual_seed(0)
    net = create_backbone(name, num_classes=2, spatial_dims=dims).eval()
    recipe = Recipe(task="classification", net=name, in_channels=1, num_classes=2, spatial_dims=dims,
                    image_size=size, class_names={0: "no disc", 1: "disc"})  # fmt: skip
    report = export_network(net, recipe, tmp_path / "cls.onnx")
    assert max(report.max_abs_diff.values()) <= 1e-4
    rng = np.random.default_rng(0)
    shape = (70, 60, 1) if dims == 2 else (40, 36, 30)
    image = Volume(rng.normal(0, 1, shape).astype(np.float32), np.eye(4)).save(tmp_path / "img.nii.gz")
    assert main(["classify", str(report.path), str(image)]) == 0
    rows = dict(line.split("\t") for line in capsys.readouterr().out.strip().splitlines())
    assert set(rows) == {"no disc", "disc"} and abs(sum(float(p) for p in rows.values()) - 1) < 1e-3
    from medimg.inference.pipeline import classification_input

    with torch.no_grad():
        expected = torch.softmax(net(classification_input(recipe, image)), 1)[0, 1].item()
    assert float(rows["disc"]) == pytest.approx(expected, abs=1e-3)


def test_streamed_blending_gives_monai_sliding_window_labels(unet, case):
    from medimg.inference.model import model_from_task
    from medimg.tasks.checkpoint import load_task

    task = load_task(unet["ckpt"])
    _, data = model_from_task(task).prepare(case["image"])
    for crop in [(slice(None),) * 3, (slice(0, 20), slice(0, 9), slice(0, 30))]:  # bigger and smaller than a ROI
        x = data.as_tensor()[(slice(None), *crop)]
        with torch.no_grad():
            monai = torch.argmax(task.infer(x[None]), dim=1)[0]
            streamed = sliding_window_labels(x, task.net, (32, 32, 32), sw_batch_size=3, overlap=0.25)
        assert streamed.shape == monai.shape and streamed.dtype == torch.uint8
        assert (streamed == monai).float().mean() >= 0.9999
        assert len(torch.unique(streamed)) > 1  # the random net does not paint one class everywhere


def test_segment_onnx_without_lightning_matches_the_checkpoint(unet, case, tmp_path):
    """medimg segment MODEL.onnx in a process where importing lightning / pytorch_lightning fails."""
    from medimg.inference import segment

    blocker = textwrap.dedent("""
        import sys
        class NoLightning:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"):
                    raise ImportError(f"{name} is blocked in this test")
        sys.meta_path.insert(0, NoLightning())
        from medimg.cli import main
        rc = main(sys.argv[1:])
        assert not [m for m in sys.modules if "lightning" in m], "lightning was imported"
        raise SystemExit(rc)
    """)
    out = tmp_path / "ort.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-c", blocker, "segment", str(unet["onnx"]), str(case["image"]), str(out), "--threads", "2"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ort_mask = np.asarray(load(out).array)
    torch_mask = np.asarray(segment(unet["ckpt"], case["image"], device="cpu").array)
    assert ort_mask.shape == torch_mask.shape == (44, 40, 30)
    assert (ort_mask == torch_mask).mean() >= 0.999
    assert set(np.unique(torch_mask)) == {0, 1, 2}
    assert min(dice_per_class(ort_mask, torch_mask, [1, 2]).values()) >= 0.999


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]


def _bare_onnx(path: Path, opset: int) -> Path:
    """A one-node ONNX model (Relu) stamped with ``opset``, without medimg metadata."""
    import onnx
    from onnx import TensorProto, helper

    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [info[0]], [info[1]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.save(model, path)
    return path


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, unet, case):
    plain = tmp_path / "weights.ckpt"
    torch.save(segmentation_net("unet", **SMALL_NETS["unet"]).state_dict(), plain)
    _one_line_error(capsys, ["export", str(plain), str(tmp_path / "m.onnx")], str(plain), "not a medimg checkpoint")
    assert not (tmp_path / "m.onnx").exists()
    bare = _bare_onnx(tmp_path / "bare.onnx", 18)
    _one_line_error(capsys, ["segment", str(bare), str(case["image"]), str(tmp_path / "o.nii.gz")], str(bare),
                    "no medimg recipe")  # fmt: skip
    _one_line_error(capsys, ["segment", str(unet["onnx"]), str(case["two"]), str(tmp_path / "o.nii.gz")],
                    str(case["two"]), "2 channels or volumes", "takes 1")  # fmt: skip
    newer = _bare_onnx(tmp_path / "newer.onnx", 99)
    _one_line_error(capsys, ["segment", str(newer), str(case["image"]), str(tmp_path / "o.nii.gz")], str(newer),
                    "opset 99", "--opset")  # fmt: skip
    _one_line_error(capsys, ["classify", str(unet["onnx"]), str(case["image"])], "segmentation model")
    assert not (tmp_path / "o.nii.gz").exists()
