"""handlers/ and storage/ stay platform-free: no telegram or wechatpy import, at any depth."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"telegram", "wechatpy"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_layers_import_no_platform_library() -> None:
    offenders = []
    for layer in ("handlers", "storage"):
        for path in (ROOT / layer).rglob("*.py"):
            bad = _imported_roots(path) & FORBIDDEN
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert offenders == []


def test_core_layers_do_not_depend_on_the_runtime() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for layer in ("handlers", "storage")
        for path in (ROOT / layer).rglob("*.py")
        if "bot" in _imported_roots(path)
    ]
    assert offenders == []


def test_the_scan_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from telegram.ext import Application\n", encoding="utf-8")
    assert "telegram" in _imported_roots(sample)
