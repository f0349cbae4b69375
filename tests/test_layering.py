"""The layers, checked on every import at any depth (inside functions too):

- handlers/ and storage/ are platform-free: no telegram or wechatpy, and no import of the runtime (bot/);
- the framework (handlers/core) imports no feature and no shared helper: only itself and storage;
- the shared helpers (handlers/shared) import the framework, never a feature;
- a feature imports no channel and no runtime (bot/);
- storage imports no handler;
- a channel package (bot/telegram, bot/wechat, bot/console) imports no other channel;
- no module imports another's private names (`from a.b import _c`): what is shared gets a public name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"telegram", "wechatpy"}


def _imported(path: Path) -> set[str]:
    """Every module `path` imports, dotted (``from a.b import c`` counts as ``a.b.c`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported(path)}


def _packages(prefix: str, path: Path) -> set[str]:
    """The second-level packages `path` imports under `prefix` (``handlers`` -> {"core", "sales", …})."""
    return {name.split(".")[1] for name in _imported(path) if name.startswith(f"{prefix}.") and name.count(".") >= 1}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


FEATURES = sorted(
    p.name for p in (ROOT / "handlers").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    and p.name not in {"core", "shared"}
)
CHANNELS = ("telegram", "wechat", "console")


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


def test_the_framework_imports_only_itself_and_storage() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports handlers.{', handlers.'.join(sorted(bad))}"
        for path in _modules("handlers/core")
        if (bad := _packages("handlers", path) - {"core"})
    ]
    assert offenders == []


def test_shared_helpers_import_no_feature() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports handlers.{', handlers.'.join(sorted(bad))}"
        for path in _modules("handlers/shared")
        if (bad := _packages("handlers", path) & set(FEATURES))
    ]
    assert offenders == []


def test_storage_imports_no_handler() -> None:
    assert [str(p.relative_to(ROOT)) for p in _modules("storage") if "handlers" in _imported_roots(p)] == []


def test_a_channel_imports_no_other_channel() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports bot.{', bot.'.join(sorted(bad))}"
        for channel in CHANNELS
        for path in _modules(f"bot/{channel}")
        if (bad := _packages("bot", path) & (set(CHANNELS) - {channel}))
    ]
    assert offenders == []


def _private_imports(path: Path) -> set[str]:
    """The private names (``_x``) `path` imports from other project modules, dotted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        and node.module.split(".")[0] in ("handlers", "storage", "bot")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    }  # fmt: skip


def test_no_module_imports_private_names_of_another() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}"
        for layer in ("handlers", "storage", "bot")
        for path in _modules(layer)
        if (bad := _private_imports(path))
    ]
    assert offenders == []


def test_the_scans_see_every_package() -> None:
    assert {"checkin", "sales", "polls", "greetings"} <= set(FEATURES)
    assert all(_modules(f"bot/{channel}") for channel in CHANNELS)
    assert len(_modules("handlers/core")) >= 10


def test_the_scan_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from telegram.ext import Application\n", encoding="utf-8")
    assert "telegram" in _imported_roots(sample)
    sample.write_text("from handlers.sales import commands\nimport handlers.core.clock\n", encoding="utf-8")
    assert _packages("handlers", sample) == {"sales", "core"}
    sample.write_text("from handlers.binding.commands import _merge as merge\n", encoding="utf-8")
    assert _private_imports(sample) == {"handlers.binding.commands._merge"}
