"""The walls between the stages (import-linter contracts in pyproject.toml) and the size
limits the code keeps: no module of ivr/ over 500 lines, no function over 60 lines outside
the tests. CI fails when a wall breaks or a unit grows past its limit."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package under `root`, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and " kept" in done.stdout


def copy_package(to: Path) -> Path:
    """The ivr package's Python files under `to` (what lint-imports reads)."""
    shutil.copytree(ROOT / "ivr", to / "ivr", ignore=shutil.ignore_patterns("static", "*.pyc"))
    return to


def test_a_broken_wall_fails_the_check(tmp_path: Path) -> None:
    """The contracts bite: the same package with the dialog importing the store, and the
    API importing a call's session, is refused, naming both walls."""
    root = copy_package(tmp_path)
    with (root / "ivr/dialog/types.py").open("a") as f:
        f.write("\nimport ivr.store  # a wall broken on purpose\n")
    with (root / "ivr/api/live.py").open("a") as f:
        f.write("\nimport ivr.call.session  # a wall broken on purpose\n")
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 broken" in done.stdout
    assert "ivr.dialog.types -> ivr.store" in done.stdout
    assert "ivr.api.live -> ivr.call.session" in done.stdout


def test_a_cycle_between_packages_fails_the_check(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    # ivr.nlu is imported by ivr.grammar; an import back closes a cycle.
    with (root / "ivr/nlu/numbers.py").open("a") as f:
        f.write("\nimport ivr.grammar  # a cycle on purpose\n")
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "No import cycle" in done.stdout and "1 broken" in done.stdout


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        (f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno
    ]


def test_no_module_of_the_package_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "ivr").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_outside_the_tests_is_over_60_lines() -> None:
    files = [p for d in ("ivr", "bench", "eval", "scripts") for p in (ROOT / d).rglob("*.py")]
    long = {where: n for p in sorted(files) for where, n in _functions(p) if n > MAX_FUNCTION_LINES}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_composition_root_contract_names_every_module() -> None:
    """A module added to ivr/ is under the 'nothing imports ivr.app' wall from the start."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    (root,) = [c for c in contracts if c.get("forbidden_modules") == ["ivr.app"]]
    package = ROOT / "ivr"
    modules = {f"ivr.{p.stem}" for p in package.glob("*.py")}
    modules |= {f"ivr.{p.parent.name}" for p in package.glob("*/__init__.py")}
    exempt = {"ivr.app", "ivr.cli", "ivr.__main__", "ivr.__init__"}
    assert modules - exempt == set(root["source_modules"])
