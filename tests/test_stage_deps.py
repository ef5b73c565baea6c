"""`dvc repro` reruns only what changed, so each stage in dvc.yaml must list, as deps, exactly
the project modules its script imports, directly or through the library (function-level
imports included): a missing one would let an edit go unnoticed, an extra one reruns a
stage for nothing."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGE = "deepnormal"
SOURCE = REPO / "src" / PACKAGE


def imported_modules(path: Path) -> set[str]:
    """Project modules (as repo-relative paths) that a file imports, anywhere in it, or
    names as a file (serving logs pyfunc_model.py as the MLflow model's code)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.endswith(".py") and (SOURCE / node.value).is_file():
                found.add(SOURCE / node.value)
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from deepnormal import paths` imports deepnormal.paths when that is a module.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != PACKAGE:
                continue
            found.add(SOURCE / "__init__.py")
            module = SOURCE.joinpath(*parts[1:]).with_suffix(".py")
            if len(parts) > 1 and module.is_file():
                found.add(module)
    return {str(path.relative_to(REPO)) for path in found}


def closure(script: Path) -> set[str]:
    """Every project module a script reaches through imports, transitively."""
    seen, todo = set(), imported_modules(script)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= imported_modules(REPO / module)
    return seen


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_code_deps_match_what_its_script_imports(stage):
    script = f"stages/{stage}.py"
    assert STAGES[stage]["cmd"] == f"python {script}"
    declared = {dep for dep in STAGES[stage]["deps"] if dep.endswith(".py")}
    expected = closure(REPO / script) | {script}
    assert sorted(expected - declared) == [], f"{stage}: imported but not a dependency"
    assert sorted(declared - expected) == [], f"{stage}: a dependency it never imports"


def test_the_import_walk_sees_function_level_imports():
    # train imports deepnormal.training inside main(); training imports lightning_module.
    assert "src/deepnormal/lightning_module.py" in closure(REPO / "stages/train.py")
