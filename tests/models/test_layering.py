"""models/ depends on nothing above it: no import of harness/ or reports/ anywhere in models/."""

import ast
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_models_import_nothing_from_the_harness_or_the_reports():
    files = sorted(MODELS.rglob("*.py"))
    assert len(files) > 10  # the scan sees the package
    upward = {
        f"{path.relative_to(MODELS.parent)}: {module}"
        for path in files
        for module in _imported_modules(path)
        if module.split(".")[0] in ("harness", "reports", "tasks")
    }
    assert not upward


@pytest.mark.integration  # a fresh interpreter, to see what an import loads
def test_the_pure_contracts_import_without_the_built_in_models():
    """models.spec and models.presets cost nothing: the built-in models load on the registry's first question."""
    import subprocess
    import sys

    code = "import sys, models.spec, models.presets; print('models.carat' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=MODELS.parent, check=True)
    assert out.stdout.split() == ["False", "False"]
