"""Test support: the real Debian tools some tests use (chromium, dicom3tools, slurm-wlm + munge), installed with
apt when missing -- as a fresh CI machine needs -- and a reason to skip only where apt cannot install them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence


def apt_install(packages: Sequence[str], present: Callable[[], bool], *, recommends: bool = True) -> str | None:
    """Install ``packages`` unless ``present()``; return None when they are there afterwards, else why not."""
    if present():
        return None
    names = " ".join(packages)
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{names} not installed and apt-get cannot run here (not root or no apt)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, check=False, timeout=600)
    extra = [] if recommends else ["--no-install-recommends"]
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *extra, *packages],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0 or not present():
        return f"apt-get could not install {names}: {proc.stderr.strip()[-300:]}"
    return None
