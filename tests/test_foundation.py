"""The workspace itself: import hygiene, environment files that agree, the layout the user fixed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_import_medimg_pulls_no_torch_and_has_no_side_effects():
    code = (
        "import logging, os, sys; env = dict(os.environ); handlers = list(logging.getLogger().handlers);"
        "import medimg;"
        "assert 'torch' not in sys.modules and 'monai' not in sys.modules, 'heavy import';"
        "assert 'pydicom' not in sys.modules, 'pydicom imported eagerly';"
        "assert dict(os.environ) == env, 'env changed';"
        "assert logging.getLogger().handlers == handlers, 'logging configured';"
        "print(medimg.__version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_public_api_resolves_lazily():
    import medimg

    assert medimg.load.__module__ == "medimg.io.load"
    assert set(medimg.__all__) <= set(dir(medimg))


def _names(lines: list[str]) -> set[str]:
    out = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        out.add(re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return out


def test_environment_yml_agrees_with_requirements():
    req = _names((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {str(d).split("=")[0].lower() for d in env["dependencies"] if isinstance(d, str)}
    # environment.yml installs the very same pinned file through pip, so the sets agree by construction ...
    assert "-r requirements.txt" in pip_section
    # ... and conda itself adds only the interpreter
    assert conda <= {"python", "pip"}
    assert {"torch", "monai", "pydicom", "simpleitk", "nibabel", "jupyterlab", "matplotlib", "pytorch-lightning"} <= req


def test_every_requirement_is_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"unpinned requirement: {line}"


def test_layout_the_user_fixed():
    for name in ("notebooks", "medimg", "data", "docker", "tests", "environment.yml", "README.md", "Makefile"):
        assert (ROOT / name).exists(), name
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
