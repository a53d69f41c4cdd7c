"""The package's layers are a checked contract (issue 27): import-linter checks the layers and that no package has
import circles (``make lint`` and CI run ``lint-imports``; this test runs it too), and an AST scan forbids what
import-linter cannot see: importing another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "milestones"


def private_imports(package: Path = PACKAGE) -> list[str]:
    """``file:line: from X import _name`` for every private name imported from another module, and every private
    module (``_registry``) imported from outside its own package."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        here = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = list(here[: len(here) - node.level + 1]) if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if not target or target[0] != package.name:
                continue  # another library's privates are its business (and torch's own tests')
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{where}: from {'.' * node.level}{node.module or ''} import {alias.name}")
            for i, part in enumerate(target):
                if part.startswith("_") and not part.startswith("__") and tuple(target[:i]) != tuple(here):
                    found.append(f"{where}: imports the private module {'.'.join(target[: i + 1])} from outside "
                                 f"{'.'.join(target[:i])}")
                    break
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    found = private_imports()
    assert not found, "private names imported across modules (make them public or move them):\n" + "\n".join(found)


def test_the_scan_catches_a_private_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "_impl.py").write_text("X = 1\n")
    (pkg / "sub" / "b.py").write_text("from ..a import _helper\nfrom ._impl import X\n")  # the second is fine
    (pkg / "c.py").write_text("from .sub._impl import X\n")  # a private module from outside its package
    found = private_imports(pkg)
    assert len(found) == 2, found
    assert "from ..a import _helper" in found[1] and "pkg.sub._impl" in found[0]


def test_the_import_contracts_hold() -> None:
    """``lint-imports`` (import-linter, a dev dependency) keeps every contract in pyproject.toml."""
    exe = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run([str(exe) if exe.exists() else "lint-imports", "--no-cache"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
