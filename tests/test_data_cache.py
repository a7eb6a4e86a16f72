"""The preprocessed-case cache when two processes (two DDP ranks, two jobs) start on it at once."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Transform

from medimg.data.cache import SharedPersistentDataset

CASES = 4


class SlowRecordedBuild(Transform):  # type: ignore[misc]
    """A deterministic 'preprocessing' that records who built which case and takes long enough to collide."""

    def __init__(self, log: str) -> None:
        self.log = log

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        with open(self.log, "a") as fh:  # O_APPEND: whole lines from both processes
            fh.write(f"{os.getpid()} {item['case']}\n")
        time.sleep(0.4)
        return {"case": item["case"], "image": torch.full((8, 8, 8), float(item["case"]))}


def _fill(cache: str, log: str, start: Any, reverse: bool) -> list[float]:
    items = [{"case": i} for i in range(CASES)]
    ds = SharedPersistentDataset(items, transform=SlowRecordedBuild(log), cache_dir=cache)
    start.wait()  # both processes hit the empty cache at the same moment
    order = reversed(range(CASES)) if reverse else range(CASES)
    return [float(ds[i]["image"].sum()) for i in order]


def test_two_processes_on_an_empty_cache_build_each_case_exactly_once(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    cache.mkdir()
    ctx = mp.get_context("fork")  # the children only save and load small tensors: no thread pool to inherit
    start = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        # one process walks the cases forwards, the other backwards: they meet in the middle, where both want
        # the same case at once, and each waits for the other's build rather than repeating or half-reading it
        runs = [pool.apply_async(_fill, (str(cache), str(log), start, reverse)) for reverse in (False, True)]
        forwards, backwards = (r.get(timeout=300) for r in runs)
    want = [512.0 * i for i in range(CASES)]
    assert forwards == want and backwards == want[::-1]
    builds = [line.split()[1] for line in log.read_text().splitlines()]
    assert sorted(builds) == [str(i) for i in range(CASES)], log.read_text()  # each case built exactly once
    assert len(list(cache.glob("*.pt"))) == CASES
    assert not [p for p in cache.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]


def test_cache_entries_are_monai_compatible(tmp_path):
    """Entries written by SharedPersistentDataset are read by MONAI's own PersistentDataset and vice versa."""
    from monai.data import PersistentDataset

    items = [{"case": 3}]
    log = str(tmp_path / "builds.log")
    ours = SharedPersistentDataset(items, transform=SlowRecordedBuild(log), cache_dir=tmp_path / "c")
    first = ours[0]["image"]
    monai_ds = PersistentDataset(items, transform=SlowRecordedBuild(log), cache_dir=tmp_path / "c")
    assert float(monai_ds[0]["image"].sum()) == float(first.sum()) == 512.0 * 3
    assert len(Path(log).read_text().splitlines()) == 1  # MONAI found the entry: no second build
