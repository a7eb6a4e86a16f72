"""Write one benchmark's section into BENCHMARKS.md (replacing the old figures of that section only)."""

from __future__ import annotations

import re
from pathlib import Path

from medimg.io.atomic import atomic_write_text

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def update_section(title: str, body: str) -> None:
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    atomic_write_text(BENCHMARKS_MD, text)
