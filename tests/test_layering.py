"""The package's layering, locked: no module imports a higher room, nothing imports the package root, and
``import medimg`` (and the CLI's start) stay light.

Rooms, lowest first (a module may import its own room and the ones below it, never above):

    errors, _version -> io -> data, models, transforms, metrics -> inference -> tasks, plan, export
    -> explain, review, viz, pacs -> cli, demo

``inference`` (a trained model as one object and the pipeline it runs, no Lightning) sits under everything that
runs a model; ``plan`` reads data/models/transforms and nothing above, so it sits beside ``tasks``. ``metrics``
needs only io (reading label files) and numpy/scipy, and validation in ``tasks`` scores with it, so it sits below.
Every ``import`` statement counts, including the ones inside functions (a lazy upward import is still an upward
dependency). A new sub-package must be placed here. Rooms of one layer do not import each other either, except in
the directions :data:`SIDEWAYS` names (so a loop like the old tasks <-> export cannot come back).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medimg"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "_version", "_lazy"}),
    frozenset({"io"}),
    frozenset({"data", "models", "transforms", "metrics"}),
    frozenset({"inference"}),
    frozenset({"tasks", "plan", "export"}),
    frozenset({"explain", "review", "viz", "pacs"}),
    frozenset({"cli", "demo", "__main__"}),
)
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}

#: The imports allowed between two rooms of one layer, as (importer, imported): one direction each, named.
SIDEWAYS = frozenset(
    {
        ("data", "transforms"),  # data modules build their MONAI pipelines
        ("export", "tasks"),  # a classification checkpoint is read through its LightningModule
        ("review", "explain"),  # the reading session shows explanations
        ("review", "viz"),  # ... drawn by viz
        ("pacs", "explain"),  # the listener explains what it segments when asked
        ("__main__", "cli"),
        ("cli", "demo"),
    }
)

#: Never imported by ``import medimg`` (nor, for the CLI, before a sub-command needs them).
HEAVY = ("torch", "pytorch_lightning", "lightning", "monai", "matplotlib", "timm", "scipy", "pydicom", "numpy")


def room_of(path: Path, package: Path = PACKAGE) -> str:
    """``medimg/io/dicom/scan.py`` -> ``io``; ``medimg/cli.py`` -> ``cli``; the root ``__init__.py`` -> ``""``."""
    parts = path.relative_to(package).parts
    if parts == ("__init__.py",):
        return ""
    return parts[0].removesuffix(".py")


def medimg_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute ``medimg`` import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]  # `from medimg import X` names the root
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "medimg" or n.startswith("medimg.")]
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """Every import that breaks the layering, as ``file:line: what``."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        room = room_of(path, package)
        if room == "":
            continue  # the root may name what it re-exports
        if room not in RANK:
            problems.append(f"{path.relative_to(package.parent)}: room {room!r} is not placed in LAYERS")
            continue
        for line, module in medimg_imports(path):
            where = f"{path.relative_to(package.parent)}:{line}"
            if module == "medimg":
                problems.append(f"{where}: imports the package root (use medimg._version / the module itself)")
                continue
            target = module.split(".")[1]
            if target not in RANK:
                problems.append(f"{where}: imports {module}, whose room is not placed in LAYERS")
            elif RANK[target] > RANK[room]:
                problems.append(f"{where}: {room} imports {module} from a higher room ({target})")
            elif RANK[target] == RANK[room] and target != room and (room, target) not in SIDEWAYS:
                problems.append(f"{where}: {room} imports {module} from a room of its own layer ({target})")
    return problems


def test_no_module_imports_a_higher_room() -> None:
    problems = upward_imports()
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_the_check_sees_lazy_and_root_imports(tmp_path: Path) -> None:
    # the rule itself, on a throw-away package: a function-level upward import and a root import are both caught
    fake = tmp_path / "medimg"
    (fake / "io").mkdir(parents=True)
    (fake / "tasks").mkdir()
    (fake / "io" / "reader.py").write_text("def f():\n    from medimg.tasks.fit import g\n")
    (fake / "tasks" / "fit.py").write_text("from medimg import __version__\nfrom medimg.io.reader import f\n")
    assert upward_imports(fake) == [
        "medimg/io/reader.py:2: io imports medimg.tasks.fit from a higher room (tasks)",
        "medimg/tasks/fit.py:1: imports the package root (use medimg._version / the module itself)",
    ]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    return set(proc.stdout.split())


def test_import_medimg_is_light() -> None:
    loaded = _loaded_after("import medimg")
    assert not [m for m in HEAVY if m in loaded]
    assert {m for m in loaded if m.startswith("medimg")} == {
        "medimg",
        "medimg._lazy",
        "medimg._version",
        "medimg.errors",
    }


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("import medimg.cli", ()),  # `medimg --help` starts at once
        ("import medimg.io", ("numpy", "pydicom")),  # reading DICOM needs no deep-learning stack
        ("import medimg.viz", ("numpy", "pydicom")),  # matplotlib only once a figure is drawn
    ],
)
def test_light_entry_points(statement: str, allowed: tuple[str, ...]) -> None:
    loaded = _loaded_after(statement)
    assert [m for m in HEAVY if m in loaded and m not in allowed] == []


def test_dicom_input_never_imports_the_derived_objects_built_on_it() -> None:
    """``io/derived`` (SEG, Parametric Map, Key Object) builds on ``io/dicom``; the other way would be a circle
    (the old scan -> seg listing -> seg source -> scan)."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in sorted((PACKAGE / "io" / "dicom").rglob("*.py"))
        for line, module in medimg_imports(path)
        if module.startswith("medimg.io.derived")
    ]
    assert not found, "io/dicom imports io/derived:\n" + "\n".join(found)


#: The house's size rule (STYLE.md habit 1): split a module long before this, name a function's steps before this.
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def test_no_module_or_function_outgrows_the_size_rule() -> None:
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_big.append(f"{where}:{node.lineno}: {node.name} is {length} lines")
    assert not too_big, "over the size rule:\n" + "\n".join(too_big)
