"""The disk cache of preprocessed cases, safe for several processes filling it at once (DDP ranks, the nodes of
a multi-node job, two jobs on one shared file system).

MONAI's ``PersistentDataset`` (1.6) already writes each entry to a temporary file and moves it into place, but:

* nothing stops two processes from building the same entry: every rank, node and job that starts on an empty
  cache preprocesses every case (about 8 s per CT case here) and they all write it;
* the temporary file lives in the *system* temporary folder. When the cache is on another file system (the
  shared one, on a cluster), ``shutil.move`` copies and then deletes: a process on another rank can open the
  half-copied ``.pt``, and ``torch.load`` fails with an error MONAI does not recover from (it only recovers
  from "Invalid magic number");
* the file is not flushed to disk before it becomes visible.

:class:`SharedPersistentDataset` keeps MONAI's hashing, file names and loading and changes only the miss: an
exclusive lock per entry (``fcntl.flock`` on ``.<entry>.lock`` in the cache folder, which NFS and Lustre
mounted with ``flock`` honour across nodes) makes the first process build the entry while the others wait
and then read it, and the write goes through :func:`medimg.io.atomic.atomic_path` (temporary file in the
cache folder itself, ``fsync``, ``os.replace``), so an entry is either complete or absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
from monai.data import PersistentDataset

from medimg.io.atomic import atomic_path

__all__ = ["SharedPersistentDataset"]


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another process builds this entry
        yield
    finally:
        os.close(fd)  # closing releases the lock


class SharedPersistentDataset(PersistentDataset):  # type: ignore[misc]
    """``monai.data.PersistentDataset`` whose entries are built once, under a lock, and written atomically."""

    def _entry(self, cache_dir: Path, item: Any) -> Path:
        # the name MONAI gives the entry, so caches written by either class are shared
        name: str = self.hash_func(item).decode("utf-8") + self.transform_hash
        return cache_dir / f"{name}.pt"

    def _load(self, entry: Path) -> Any:
        return torch.load(entry, weights_only=self.weights_only)

    def _cachecheck(self, item_transformed: Any) -> Any:
        if self.cache_dir is None:
            return super()._cachecheck(item_transformed)
        from monai.data.utils import SUPPORTED_PICKLE_MOD
        from monai.utils import convert_to_tensor, look_up_option

        entry = self._entry(Path(self.cache_dir), item_transformed)
        if entry.is_file():
            return self._load(entry)
        with _exclusive(entry.with_name(f".{entry.stem}.lock")):
            if entry.is_file():  # built by another process while this one waited
                return self._load(entry)
            built = self._pre_transform(deepcopy(item_transformed))
            with atomic_path(entry) as tmp:
                torch.save(
                    convert_to_tensor(built, convert_numeric=False, track_meta=self.track_meta),
                    tmp,
                    pickle_module=look_up_option(self.pickle_module, SUPPORTED_PICKLE_MOD),
                    pickle_protocol=self.pickle_protocol,
                )
        return built
