"""``medimg plan``: fingerprint, topology, plan invariants on phantoms of different shapes and spacings, the YAML,
bad input refused before training, and a short fit with the planned config."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from medimg.cli import main
from medimg.data.phantoms import make_phantom_msd, make_phantom_nnunet
from medimg.errors import ConfigError
from medimg.plan import Budget, fingerprint_dataset, make_plan, parse_duration, parse_size
from medimg.plan.measure import Measurement
from medimg.plan.planner import median_resampled_shape, target_spacing
from medimg.plan.schedule import MIN_STEPS_PER_EPOCH, VALIDATION_TIME_SHARE, schedule, sliding_windows
from medimg.plan.time_rule import MIN_STEPS_CPU, TRAIN_TIME_SHARE, Candidate, choose_by_time, monotone
from medimg.plan.topology import MIN_FEATURE_EDGE, fit_patch, topology
from medimg.tasks.optim import COOLDOWN_SHARE, adamw_cosine, stable_then_cosine

#: (name, make_phantom_msd kwargs): isotropic brain-like MR, anisotropic abdomen-like CT, thin 2D-like slabs
PHANTOMS = {
    "brain_iso": {"shape": (32, 32, 32), "spacing": (1.0, 1.0, 1.0), "modality": "MR", "jitter": 0.1},
    "abdomen_aniso": {"shape": (48, 48, 12), "spacing": (0.8, 0.8, 4.0), "distractors": 2, "jitter": 0.1},
    "slab_2d_like": {"shape": (64, 64, 3), "spacing": (1.0, 1.0, 5.0)},
}
#: a CPU budget (bytes, seconds) small enough that the patch has to shrink on some phantoms
CPU_BUDGET = Budget("cpu", 60 * 2**20, 3600.0, "cpu")
GPU_BUDGET = Budget("cuda", 8e9, 3600.0, "meta")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("plan")
    return {name: make_phantom_msd(base / name, n_cases=4, n_test=0, seed=i, **kw)
            for i, (name, kw) in enumerate(PHANTOMS.items())}  # fmt: skip


@pytest.mark.parametrize(
    ("spacing", "patch", "strides", "kernels"),
    [
        ((1.0, 1.0, 1.0), (64, 64, 64), [[1, 1, 1], *[[2, 2, 2]] * 4], [[3, 3, 3]] * 5),
        # thick slices: in-plane pooling (and kernel 1 across slices) until the spacings are within a factor 2
        (
            (0.8, 0.8, 4.0),
            (64, 64, 16),
            [[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]],
            [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        ),
        ((1.0, 1.0, 5.0), (64, 64, 3), [[1, 1, 1], *[[2, 2, 1]] * 4], [[3, 3, 1]] * 2 + [[3, 3, 3]] * 3),
    ],
)  # fmt: skip (the expected rows are what nnunetv2 2.8.1's get_pool_and_conv_props returns for these inputs)
def test_topology_follows_nnunets_pooling_rule(spacing, patch, strides, kernels):
    topo = topology(spacing, patch)
    assert [list(s) for s in topo.strides] == strides
    assert [list(k) for k in topo.kernels] == kernels


def test_anisotropic_target_spacing_takes_the_10th_percentile():
    spacings = np.array([[0.8, 0.8, z] for z in (4.0, 5.0, 6.0, 6.0, 8.0)])
    shapes = np.array([[256, 256, 20]] * 5, dtype=float)
    spacing, reason = target_spacing(spacings, shapes)
    assert spacing[:2] == (0.8, 0.8) and spacing[2] == pytest.approx(np.percentile([4, 5, 6, 6, 8], 10))
    assert "anisotropy" in reason
    iso, _ = target_spacing(np.array([[1.0, 1.0, 1.2], [1.0, 1.0, 1.4]]), np.array([[100, 100, 90]] * 2, float))
    assert iso == (1.0, 1.0, 1.3)


def test_fingerprint_is_cached_and_describes_the_cases(phantoms):
    root = phantoms["abdomen_aniso"]
    fp = fingerprint_dataset(root)
    cache = list((root / ".medimg_cache").glob("fingerprint-*.json"))
    assert len(cache) == 1 and fingerprint_dataset(root).to_json() == fp.to_json()
    assert len(fp.cases) == 4 and fp.is_ct and fp.in_channels == 1
    for case in fp.cases:
        truth = np.asarray(nib.load(root / "labelsTr" / f"{case.name}.nii.gz").dataobj)
        assert case.shape == truth.shape and case.spacing == pytest.approx((0.8, 0.8, 4.0))
        assert case.class_voxels[1] == int(truth.sum()) and case.class_components[1] == 1
        lo, mid, hi = case.foreground_intensity[0][:3]
        assert lo < mid < hi and 60 < mid < 180  # the organ's HU (120 +- noise)
    assert fp.foreground_intensity[0]["p0.5"] < 120 < fp.foreground_intensity[0]["p99.5"]


@pytest.mark.parametrize("name", list(PHANTOMS))
@pytest.mark.parametrize("budget", [CPU_BUDGET, GPU_BUDGET], ids=["cpu", "gpu8GB"])
def test_plan_invariants(phantoms, name, budget):
    fp = fingerprint_dataset(phantoms[name])
    plan = make_plan(fp, budget, phantoms[name])
    cfg = plan.config
    data, model = cfg["data"]["init_args"], cfg["model"]["init_args"]
    median = median_resampled_shape(fp, data["spacing"])
    patch = data["patch_size"]
    assert all(p <= m for p, m in zip(patch, median, strict=True)), (patch, median)
    strides = np.array([[1, 1, 1], *model["net_kwargs"]["strides"]] if model["net"] == "unet"
                       else model["net_kwargs"]["strides"])  # fmt: skip
    assert plan.summary[3].endswith(f"strides {strides.tolist()}")  # the network's, as the benchmark tables quote
    divisor = strides.prod(axis=0)
    assert all(p % d == 0 for p, d in zip(patch, divisor, strict=True)), (patch, divisor)
    assert all(p // d >= 1 for p, d in zip(patch, divisor, strict=True))
    assert model["roi_size"] == patch and data["batch_size"] >= 2
    assert model["net"] == ("unet" if budget.device == "cpu" else "dynunet")
    if name == "slab_2d_like":
        assert strides[:, 2].max() == 1 and patch[2] == 3  # never pooled across the 3 thick slices
    if name == "abdomen_aniso":
        assert data["intensity"] == "ct_zscore" and data["ct_window"][0] < data["ct_stats"][0] < data["ct_window"][1]
    else:
        assert data["intensity"] == ("mr" if name == "brain_iso" else "ct_zscore")


def test_a_smaller_memory_budget_gives_a_smaller_patch(phantoms):
    fp = fingerprint_dataset(phantoms["brain_iso"])
    big = make_plan(fp, GPU_BUDGET, phantoms["brain_iso"]).value("data.init_args.patch_size")
    small = make_plan(fp, Budget("cuda", 0.1e9, 3600.0, "meta"), phantoms["brain_iso"])
    assert np.prod(small.value("data.init_args.patch_size")) < np.prod(big)
    assert "memory counted on the meta device" in small.reasons["data.init_args.patch_size"]


def test_fit_patch_never_grows_the_patch():
    for patch in [(77, 78, 38), (50, 33, 9), (130, 130, 20)]:
        fitted, topo = fit_patch((1.5, 1.5, 3.0), patch)
        assert all(f <= p for f, p in zip(fitted, patch, strict=True))
        assert all(f % d == 0 for f, d in zip(fitted, topo.divisor, strict=True))
        assert all(-(-f // d) >= MIN_FEATURE_EDGE or d == 1 for f, d in zip(fitted, topo.divisor, strict=True))


@pytest.mark.parametrize(
    ("shape", "patch", "overlap"),
    [((57, 55, 56), (40, 40, 40), 0.25), ((80, 80, 40), (48, 48, 32), 0.5), ((32, 32, 3), (32, 32, 3), 0.25),
     ((200, 31, 7), (64, 32, 8), 0.25)],
)  # fmt: skip
def test_sliding_windows_counts_what_monai_runs(shape, patch, overlap):
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))  # MONAI pads a short axis to the window
    interval = _get_scan_interval(padded, patch, 3, (overlap,) * 3)
    assert sliding_windows(shape, patch, overlap) == len(dense_patch_slices(padded, patch, interval))


@pytest.mark.parametrize(
    ("budget_s", "step_s", "infer_s"), [(100.0, 0.4, 0.05), (3600.0, 0.8, 0.1), (100.0, 0.2, 3.0), (600.0, 2.0, 0.3)]
)
def test_schedule_fills_the_budget_and_ends_on_a_validation(budget_s, step_s, infer_s):
    budget = Budget("cpu", 1e9, budget_s, "cpu")
    s = schedule(budget, Measurement(1e6, step_s, infer_s), 2, n_val_cases=2, val_shape=(57, 55, 56), patch=(40,) * 3)
    assert s.validations >= 1  # at least the one that scores the final weights
    assert s.steps * step_s <= budget_s  # the estimated steps fit the budget ...
    assert s.max_epochs * s.steps_per_epoch >= s.steps  # ... and max_epochs does not stop them early
    assert s.steps_per_epoch >= MIN_STEPS_PER_EPOCH
    val_s = 2 * sliding_windows((57, 55, 56), (40,) * 3, 0.25) / 2 * infer_s
    if s.validations > 1:  # more than the last one only when they fit their share of the budget
        assert s.validations * val_s <= VALIDATION_TIME_SHARE * budget_s


def test_sizes_and_durations():
    assert parse_size("24GB") == 24e9 and parse_size("8GiB") == 8 * 2**30
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400
    assert parse_duration("00:00:08:00") == 480 and parse_duration("90s") == 90
    with pytest.raises(ConfigError):
        parse_duration("soon")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_phantom_msd(tmp_path_factory.mktemp("tiny") / "Tiny", n_cases=3, n_test=0, shape=(24, 24, 16))


def test_cli_plan_writes_yaml_with_reasons_and_a_short_fit_runs(tiny, tmp_path, capsys):
    root = tiny
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(root), "--out", str(out), "--device", "cpu", "--time-budget", "20m"]) == 0
    text = out.read_text()
    cfg = yaml.safe_load(text)
    assert cfg["data"]["init_args"]["dataset_dir"] == str(root.resolve())
    assert "# median spacing" in text and "nnU-Net" in text  # the reasons travel beside the values
    assert cfg["trainer"]["max_time"] == "00:00:20:00"
    # the planned config is an ordinary LightningCLI config: values can be overridden
    run = tmp_path / "run"
    args = ["fit", "--config", str(out), "--trainer.max_epochs", "1", "--data.epoch_length", "4",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.num_sanity_val_steps", "0", "--trainer.default_root_dir", str(run),
            "--data.num_workers", "0"]  # fmt: skip
    assert main(args) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_fit_without_config_plans_first(tiny, tmp_path, capsys):
    root = tiny
    run = tmp_path / "auto"
    args = ["fit", "--data.dataset_dir", str(root), "--trainer.accelerator", "cpu", "--trainer.max_time", "00:00:20:00",
            "--trainer.max_epochs", "1", "--data.epoch_length", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
            "--trainer.default_root_dir", str(run)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "planned the dataset first" in printed and "target spacing" in printed
    assert (run / "plan.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


def test_nnunet_raw_multichannel_plan(tmp_path):
    root = make_phantom_nnunet(tmp_path / "Dataset042_Two", n_cases=3, shape=(32, 32, 16), channels=("T1", "T2"))
    fp = fingerprint_dataset(root)
    assert fp.in_channels == 2 and len(fp.foreground_intensity) == 2
    plan = make_plan(fp, CPU_BUDGET, root)
    assert plan.value("model.init_args.in_channels") == 2 and plan.value("data.init_args.intensity") == "mr"


def _write(vol_array, affine, path):
    nib.save(nib.Nifti1Image(vol_array, affine), path)


def test_bad_input_names_the_case_before_training(tmp_path):
    # a label value that dataset.json does not declare
    root = make_phantom_msd(tmp_path / "extra_class", n_cases=3, n_test=0, shape=(24, 24, 12))
    lab = nib.load(root / "labelsTr" / "Phantom_001.nii.gz")
    arr = np.asarray(lab.dataobj).copy()
    arr[0, 0, 0] = 3
    _write(arr, lab.affine, root / "labelsTr" / "Phantom_001.nii.gz")
    with pytest.raises(ConfigError, match=r"case Phantom_001: label values \[3\]"):
        fingerprint_dataset(root)

    # a label on another grid than its image
    root = make_phantom_msd(tmp_path / "grid", n_cases=3, n_test=0, shape=(24, 24, 12))
    lab = nib.load(root / "labelsTr" / "Phantom_002.nii.gz")
    _write(np.asarray(lab.dataobj)[:, :, :10], lab.affine, root / "labelsTr" / "Phantom_002.nii.gz")
    with pytest.raises(ConfigError, match=r"Phantom_002.*voxel grid"):
        fingerprint_dataset(root)

    # channel counts that differ (a 2-channel 4D image among 1-channel ones)
    root = make_phantom_msd(tmp_path / "channels", n_cases=3, n_test=0, shape=(24, 24, 12))
    img = nib.load(root / "imagesTr" / "Phantom_001.nii.gz")
    two = np.stack([np.asarray(img.dataobj)] * 2, axis=-1)
    _write(two, img.affine, root / "imagesTr" / "Phantom_001.nii.gz")
    with pytest.raises(ConfigError, match=r"case Phantom_001 has 2 image channel"):
        fingerprint_dataset(root)

    # ... and from the command line: one line, exit code 2, nothing trained
    rc = main(["plan", str(root), "--out", str(tmp_path / "never.yaml"), "--device", "cpu"])
    assert rc == 2 and not (tmp_path / "never.yaml").exists()


def test_nnunet_raw_missing_channel_file_is_refused(tmp_path):
    root = make_phantom_nnunet(tmp_path / "Dataset043_Bad", n_cases=2, shape=(16, 16, 8), channels=("CT", "PET"))
    (root / "imagesTr" / "Phantom_001_0001.nii.gz").unlink()
    with pytest.raises(ConfigError, match="case Phantom_001 has channels"):
        fingerprint_dataset(root)
    spec = json.loads((root / "dataset.json").read_text())
    assert spec["file_ending"] == ".nii.gz"


class _Slow(pl.LightningModule):
    """A one-weight model whose steps take ``step_s`` of wall-clock: enough to run into a short ``max_time``."""

    def __init__(self, step_s: float = 0.0) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.step_s = step_s
        self.lrs: list[float] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        time.sleep(self.step_s)
        self.lrs.append(self.optimizers().param_groups[0]["lr"])  # type: ignore[union-attr]
        return (self.w * batch).sum()

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(32, 1), batch_size=1)

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), 1e-2, 0.0, self.trainer)


@pytest.mark.parametrize(
    ("stop", "trainer_kwargs", "step_s"),
    [
        ("max_epochs", {"max_epochs": 3, "max_time": "00:01:00:00"}, 0.0),
        ("max_time", {"max_epochs": 1000, "max_time": "00:00:00:02"}, 0.02),
    ],
)
def test_learning_rate_anneals_to_whichever_stop_comes_first(tmp_path, stop, trainer_kwargs, step_s):
    model = _Slow(step_s)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, **trainer_kwargs)  # fmt: skip
    trainer.fit(model)
    assert model.lrs[0] == pytest.approx(1e-2)
    assert all(b <= a + 1e-12 for a, b in zip(model.lrs, model.lrs[1:], strict=False))  # never rises
    assert model.lrs[-1] < 0.05 * 1e-2, f"{stop}: the last step still ran at {model.lrs[-1]:.2e}"
    if stop == "max_time":
        assert trainer.current_epoch < 999  # the time budget, not max_epochs, ended it
        # a timed run holds the peak rate and anneals only over its last COOLDOWN_SHARE
        n = len(model.lrs)
        assert model.lrs[int(0.6 * n)] == pytest.approx(1e-2)
        assert model.lrs[int(0.95 * n)] < 0.5 * 1e-2


def test_stable_then_cosine_holds_then_anneals_to_zero():
    start = 1 - COOLDOWN_SHARE
    assert stable_then_cosine(0.0) == stable_then_cosine(start) == 1.0
    assert stable_then_cosine(start + COOLDOWN_SHARE / 2) == pytest.approx(0.5)
    assert stable_then_cosine(1.0) == pytest.approx(0.0, abs=1e-12)
    values = [stable_then_cosine(p / 100) for p in range(101)]
    assert all(b <= a for a, b in itertools.pairwise(values))


#: issue 32's task: 128 x 128 x 24 at 0.9 x 0.9 x 4 mm; candidates largest first, step seconds as measured there
#: (the whole image 1.39 s) and scaled by voxels for the smaller ones
ISSUE32 = [((128, 128, 24), 1.39), ((112, 112, 24), 1.05), ((96, 96, 16), 0.47), ((64, 64, 16), 0.21)]


@pytest.mark.parametrize(
    ("budget_s", "timings", "expected"),
    [
        (300.0, ISSUE32, (96, 96, 16)),  # short budget, slow whole-image step: a smaller patch, >= 500 steps
        (3600.0, ISSUE32, (128, 128, 24)),  # an hour: the whole image leaves ~2000 steps
        (300.0, [((128, 128, 24), 0.30), ((96, 96, 16), 0.10)], (128, 128, 24)),  # a fast machine keeps it
        (30.0, ISSUE32, (64, 64, 16)),  # none leaves 500 steps: the smallest candidate (the context floor)
        (300.0, [((128, 128, 24), None), ((96, 96, 16), 0.6), ((64, 64, 16), 0.3)], (64, 64, 16)),  # untimed = slow
        # a smaller patch read slower than a larger one (others' load): it is no slower than the larger one
        (300.0, [((128, 128, 24), 1.39), ((96, 96, 16), 0.47), ((64, 64, 16), 1.9)], (96, 96, 16)),
        (60.0, [((128, 128, 24), 1.39), ((96, 96, 16), 0.09), ((64, 64, 16), 1.9)], (96, 96, 16)),
    ],
)
def test_time_rule_trades_context_for_steps(budget_s, timings, expected):
    choice = choose_by_time([Candidate(p, t) for p, t in timings], budget_s)
    assert timings[choice.index][0] == expected
    assert choice.step_limit_s == pytest.approx(budget_s * TRAIN_TIME_SHARE / MIN_STEPS_CPU)
    steps_s = monotone([Candidate(p, t) for p, t in timings])
    assert all(a is None or b is None or b <= a for a, b in itertools.pairwise(steps_s))  # smaller: never slower
    if any(t is not None and t <= choice.step_limit_s for t in steps_s):
        assert steps_s[choice.index] <= choice.step_limit_s  # the chosen step leaves MIN_STEPS_CPU steps ...
        assert all(t is None or t > choice.step_limit_s for t in steps_s[: choice.index])  # ... no larger one does
    assert "MIN_STEPS_CPU" in choice.reason and f"{list(expected)}" in choice.reason and "<- chosen" in choice.reason


@pytest.mark.parametrize("name", ["brain_iso", "abdomen_aniso"])
def test_gpu_plan_keeps_nnunets_rule_whatever_the_time_budget(phantoms, name):
    fp = fingerprint_dataset(phantoms[name])
    short = make_plan(fp, Budget("cuda", 8e9, 60.0, "meta"), phantoms[name])
    long = make_plan(fp, GPU_BUDGET, phantoms[name])
    assert short.value("data.init_args.patch_size") == long.value("data.init_args.patch_size")
    reason = short.reasons["data.init_args.patch_size"]
    assert "largest patch the memory allows" in reason and "time rule" not in reason


def test_cpu_plan_reasons_state_the_time_rule_and_the_sampling(phantoms):
    fp = fingerprint_dataset(phantoms["brain_iso"])
    plan = make_plan(fp, CPU_BUDGET, phantoms["brain_iso"])
    reason = plan.reasons["data.init_args.patch_size"]
    assert "CPU time rule" in reason and f">= {MIN_STEPS_CPU} steps" in reason and "<- chosen" in reason
    assert plan.value("data.init_args.foreground_sampling") == "classes"
    assert "split equally among the foreground classes" in plan.reasons["data.init_args.foreground_sampling"]
    assert plan.value("data.init_args.patch_size") in [[int(v) for v in c.split(", ")] for c in
                                                       _chosen(reason)]  # fmt: skip


def _chosen(reason: str) -> list[str]:
    import re

    return re.findall(r"\[([0-9, ]+)\] [0-9.]+ s (?:\(read [0-9.]+ s\) )?\([0-9]+ steps\) <- chosen", reason)
