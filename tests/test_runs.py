"""``medimg runs``: three short real runs side by side, ``run.json`` for every way a fit ends, and bad input."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tests_support import SMALL_FIT

from medimg.cli import main
from medimg.data.phantoms import make_phantom_msd
from medimg.errors import ConfigError, MedimgError
from medimg.tasks.lightning_cli import run_cli
from medimg.tasks.preemption import Preempted
from medimg.tasks.run_record import RUN_RECORD, RunRecord
from medimg.tasks.runs import config_diff, flatten, read_epoch_metrics, table
from medimg.viz.runs import runs_text

#: The three runs: extra options and the config keys they change with respect to the first (the baseline).
RUNS = [
    ([], set()),
    (["--model.lr", "0.02"], {"model.lr"}),
    (["--trainer.max_epochs", "2", "--data.epoch_length", "16"], {"trainer.max_epochs", "data.epoch_length"}),
]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    dataset = make_phantom_msd(tmp_path_factory.mktemp("msd") / "Task99_Phantom", n_cases=6, n_test=1, seed=3)
    root = tmp_path_factory.mktemp("runs")
    for extra, _ in RUNS:
        args = ["fit", *SMALL_FIT, "--data.dataset_dir", str(dataset), "--trainer.max_epochs", "1"]
        assert run_cli([*args, "--trainer.default_root_dir", str(root), *extra]) == 0
    return root


def version(root: Path, n: int) -> Path:
    return root / "lightning_logs" / f"version_{n}"


def test_three_runs_side_by_side(runs_root):
    runs = table(runs_root)
    assert [r.name for r in runs.rows] == ["version_0", "version_1", "version_2"]
    assert runs.baseline == "version_0"
    assert [set(r.diff) for r in runs.rows] == [keys for _, keys in RUNS]
    assert runs.rows[1].diff == {"model.lr": 0.02}
    for n, row in enumerate(runs.rows):
        dice = read_epoch_metrics(version(runs_root, n) / "metrics.csv")["val/dice"]
        assert row.dice_best == max(dice.values())
        assert row.dice_last == dice[max(dice)]
        assert row.hd95_mm_last is not None and row.nsd_last is not None
        assert (row.status, row.notes, row.attempts) == ("finished", [], 1)
        assert row.epochs == (2 if n == 2 else 1)
        assert row.commit is not None and len(row.dataset_digest or "") == 64
        record = json.loads((version(runs_root, n) / RUN_RECORD).read_text())
        assert record["status"] == "finished" and record["device_kind"] == "cpu"
        assert record["device_hours"] > 0 and record["peak_rss_mb"] > 0 and record["peak_gpu_mb"] is None
        assert [e["epoch"] for e in record["per_epoch"]] == list(range(row.epochs))
    # another baseline: the diff is taken against it
    assert set(table(runs_root, baseline="version_1").rows[0].diff) == {"model.lr"}
    text = runs_text(runs)
    assert len(text.splitlines()) == 4 and "model.lr=0.02" in text and "finished" in text


def test_cli_prints_the_table_and_writes_csv(runs_root, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["runs", str(runs_root), "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "version_2" in printed and "trainer.max_epochs=2" in printed
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["finished"] * 3
    assert rows[2]["diff"] == "data.epoch_length=16; trainer.max_epochs=2"


def _truncate_metrics(folder: Path) -> None:
    path = folder / "metrics.csv"  # a job killed mid-write: the last line cut short
    *lines, last = path.read_text().splitlines()
    path.write_text("\n".join([*lines, ",".join(last.split(",")[:3])]))


def _garble_metrics(folder: Path) -> None:
    path = folder / "metrics.csv"
    path.write_text(path.read_text() + "\x00\x00garbage" + "," * 60 + "\n")


def _drop_run_record(folder: Path) -> None:
    (folder / RUN_RECORD).unlink()


def _older_medimg(folder: Path) -> None:
    """What an older medimg wrote: a fingerprint without attempts or dataset digest, no run.json."""
    fingerprint = json.loads((folder / "fingerprint.json").read_text())
    for key in ("attempts", "dataset_digest", "container_image"):
        fingerprint.pop(key, None)
    (folder / "fingerprint.json").write_text(json.dumps({**fingerprint, "medimg": "0.0.9"}))
    _drop_run_record(folder)


def _odd_record_values(folder: Path) -> None:
    """run.json and fingerprint.json with values of the wrong type (another version, a hand edit)."""
    record = json.loads((folder / RUN_RECORD).read_text())
    (folder / RUN_RECORD).write_text(json.dumps({**record, "wall_s": "12 s", "epochs": None, "peak_rss_mb": [1]}))
    fingerprint = json.loads((folder / "fingerprint.json").read_text())
    (folder / "fingerprint.json").write_text(json.dumps({**fingerprint, "attempts": {"0": "x"}}))


@pytest.mark.parametrize(
    ("damage", "status", "note"),
    [
        (_truncate_metrics, "finished", "metrics.csv: "),
        (_garble_metrics, "finished", "metrics.csv: "),
        (_drop_run_record, "unknown", f"no {RUN_RECORD}"),
        (_older_medimg, "unknown", "fingerprint.json without attempts"),
        (_odd_record_values, "finished", f"{RUN_RECORD}: wall_s is not a number"),
    ],
)
def test_a_damaged_run_is_listed_with_a_note(runs_root, tmp_path, damage, status, note):
    copy = tmp_path / "root"
    shutil.copytree(version(runs_root, 0), copy / "lightning_logs" / "version_0")
    damage(copy / "lightning_logs" / "version_0")
    (row,) = table(copy).rows
    assert row.status == status
    assert [n for n in row.notes if n.startswith(note)], row.notes
    assert "note version_0: " + note in runs_text(table(copy))
    assert main(["runs", str(copy), "--csv", str(tmp_path / "runs.csv")]) == 0  # the CLI lists it, no traceback


def test_empty_root_is_a_note_and_missing_root_an_error(tmp_path, capsys):
    runs = table(tmp_path)
    assert runs.rows == [] and runs.notes and runs.notes[0].startswith("no runs found")
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("note: no runs found")
    with pytest.raises(MedimgError):
        table(tmp_path / "missing")
    assert main(["runs", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such folder" in err


def test_unknown_baseline_is_a_config_error(runs_root):
    with pytest.raises(ConfigError, match="matches no run"):
        table(runs_root, baseline="version_9")


@pytest.mark.parametrize(
    ("config", "baseline", "expected"),
    [
        ({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 2]}}, {}),
        ({"a": {"b": 2}}, {"a": {"b": 1}}, {"a.b": 2}),
        ({"a": {}}, {"a": {"b": 1}}, {"a": {}, "a.b": "<unset>"}),
        ({"model": {"class_path": "M", "init_args": {"lr": 2}}}, {"model": {"class_path": "M"}}, {"model.lr": 2}),
        ({"trainer": {"default_root_dir": "x"}}, {"trainer": {"default_root_dir": "y"}}, {}),
    ],
)
def test_config_diff(config, baseline, expected):
    assert config_diff(flatten(config), flatten(baseline)) == expected


class _Tiny(pl.LightningModule):
    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.fail = fail

    def training_step(self, batch, batch_idx):
        if self.fail is not None:
            raise self.fail
        return self.layer(batch[0]).sum()

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.ones(8, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("fail", "trainer_kwargs", "status", "error"),
    [
        (None, {}, "finished", None),
        (None, {"max_time": timedelta(0)}, "stopped_by_time", None),
        (Preempted("requeue"), {}, "preempted", None),
        (RuntimeError("boom /data/Doe^Jane"), {}, "crashed", "RuntimeError"),
    ],
)
def test_run_record_says_how_the_fit_ended(tmp_path, fail, trainer_kwargs, status, error):
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_epochs=2, accelerator="cpu", callbacks=[RunRecord()], logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **trainer_kwargs,
    )  # fmt: skip
    if fail is None:
        trainer.fit(_Tiny())
    else:
        with pytest.raises(type(fail)):
            trainer.fit(_Tiny(fail))
    text = (tmp_path / RUN_RECORD).read_text()
    record = json.loads(text)
    assert (record["status"], record["error"]) == (status, error)
    assert record["device_hours"] > 0 and record["peak_rss_mb"] > 0
    assert "Doe" not in text  # the exception's message (which may name a patient's file) is not kept


def test_learning_curves_of_all_runs_on_one_axis(runs_root):
    import matplotlib

    matplotlib.use("Agg")
    from medimg.viz.runs import plot_runs_curves

    fig = plot_runs_curves(table(runs_root), keys=("val/dice",))
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["version_0", "version_1", "version_2"]
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [1, 1, 2]
