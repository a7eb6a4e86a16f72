"""Write a :class:`~medimg.plan.planner.Plan` as an ordinary LightningCLI YAML config, each value with its reason
as a comment beside it.

    medimg fit --config plan.yaml --data.dataset_dir DIR --trainer.max_epochs 5   # any value can be overridden
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medimg.io.atomic import atomic_write_text
from medimg.plan.planner import Plan

__all__ = ["plan_yaml", "write_plan"]

INDENT = "  "


def _scalar(value: Any) -> str:
    """A YAML flow value: JSON is YAML, and keeps lists of lists on one line."""
    return json.dumps(value)


def _lines(node: dict[str, Any], reasons: dict[str, str], prefix: str, depth: int) -> list[str]:
    out = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        reason = reasons.get(dotted)
        pad = INDENT * depth
        if isinstance(value, dict) and dotted not in reasons and value:
            out.append(f"{pad}{key}:")
            out += _lines(value, reasons, dotted + ".", depth + 1)
            continue
        line = f"{pad}{key}: {_scalar(value)}"
        out.append(f"{line}  # {reason}" if reason else line)
    return out


def plan_yaml(plan: Plan, command: str = "") -> str:
    """The YAML text of a plan (header comments, then the config with a reason beside each planned value)."""
    head = [
        f"# Planned by `medimg plan` for {plan.name}{f' ({command})' if command else ''}.",
        "# An ordinary LightningCLI config:  medimg fit --config THIS.yaml [--data.dataset_dir DIR] [--any.key VALUE]",
        *(f"#   {line}" for line in plan.summary),
    ]
    return "\n".join([*head, *_lines(plan.config, plan.reasons, "", 0)]) + "\n"


def write_plan(plan: Plan, path: str | os.PathLike[str], command: str = "") -> Path:
    """Write the plan's YAML atomically; returns the path."""
    dest = Path(path)
    atomic_write_text(dest, plan_yaml(plan, command))
    return dest
