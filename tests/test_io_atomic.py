"""Atomic writes: complete or absent, never half a file; and the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from medimg.io import Volume
from medimg.io.atomic import atomic_path, atomic_write_text, current_umask


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_umask_permissions(mask, mode, umask, tmp_path):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "report.json", "{}")
    Volume(np.zeros((2, 2, 2), np.int16), np.eye(4)).save(tmp_path / "ct.nii.gz")
    for name in ("report.json", "ct.nii.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_replaced_file_keeps_its_permissions(umask, tmp_path):
    umask(0o022)
    dest = tmp_path / "shared.txt"
    dest.write_text("old")
    dest.chmod(0o640)
    atomic_write_text(dest, "new")
    assert dest.read_text() == "new"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640


def test_failure_leaves_the_destination_and_no_temporary(tmp_path):
    dest = tmp_path / "mask.nii.gz"
    dest.write_text("previous")

    def write_half() -> None:
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_half()
    assert dest.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]


def test_cli_convert_output_is_group_readable_under_a_group_umask(tmp_path, phantom):
    from medimg.io.dicom.write import write_series

    write_series(phantom(shape=(6, 6, 3)), tmp_path / "dcm", modality="CT")
    out = tmp_path / "out"
    args = ["convert", str(tmp_path / "dcm"), str(out)]
    code = f"import os, sys; os.umask(0o002); from medimg.cli import main; sys.exit(main({args!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and all(m == 0o664 for m in modes.values()), modes
