"""The package layout keeps its promises: small modules and functions, imports that only go down
(the import-linter contract in pyproject.toml), and a contract that really fails when broken."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "newsletter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
STAGES = {
    "inbound",
    "core",
    "storage",
    "compose",
    "audience",
    "delivery",
    "schedule",
    "web",
    "cli",
    "config",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(REPO)): n for p in _modules() if (n := p.read_text().count("\n")) > 400
    }
    assert long == {}


def test_no_function_is_over_80_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long[f"{path.relative_to(REPO)}:{node.name}"] = length
    assert long == {}


def test_the_top_of_the_package_is_the_stages_and_at_most_six_modules() -> None:
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert len(top) <= 6, top
    assert folders == STAGES


def test_exceptions_are_defined_only_in_errors_py() -> None:
    elsewhere = []
    for path in _modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if node.name.endswith("Error") or bases & {"Exception", "NewsletterError"}:
                    elsewhere.append(f"{path.relative_to(REPO)}:{node.name}")
    assert elsewhere == []


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


needs_linter = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')"
)


@needs_linter
def test_the_import_contract_holds() -> None:
    result = _lint_imports(REPO, REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@needs_linter
@pytest.mark.parametrize(
    ("module", "bad_import"),
    [
        ("core/models.py", "import newsletter.cli"),  # a lower layer imports the CLI
        ("compose/render.py", "from newsletter.config import Settings"),  # compose reads Settings
        ("delivery/sender.py", "import newsletter.config"),  # only the factory may
        ("schedule/service.py", "import newsletter.web.app"),  # schedule and web are apart
    ],
)
def test_the_import_contract_fails_when_a_module_imports_upwards(
    tmp_path: Path, module: str, bad_import: str
) -> None:
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "newsletter", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = copy / "newsletter" / module
    text = target.read_text()
    head, _, rest = text.partition("from __future__ import annotations\n")
    target.write_text(f"{head}from __future__ import annotations\n{bad_import}  # test\n{rest}")
    result = _lint_imports(tmp_path, copy)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "BROKEN" in result.stdout
