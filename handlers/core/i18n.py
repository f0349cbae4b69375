"""Message catalogs: every user-facing text, per locale, looked up by dotted key.

Each package of `handlers/` (the core, the shared helpers, every feature) keeps its own texts beside its code,
one file per locale, `handlers/<package>/texts/<locale>.yaml`; they are merged at load, and a key defined twice
is refused. zh_CN is the default, en the second language.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml

LOCALES = ("zh_CN", "en")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{full}."))
        else:
            flat[full] = str(value)
    return flat


def catalog_files(locale: str) -> list[tuple[str, Traversable]]:
    """Every package's texts for `locale`, as (package name, file), in name order."""
    found = []
    for package in resources.files("handlers").iterdir():
        entry = package.joinpath("texts", f"{locale}.yaml")
        if package.is_dir() and entry.is_file():
            found.append((package.name, entry))
    return sorted(found, key=lambda pair: pair[0])


def load_catalog(locale: str) -> dict[str, str]:
    if locale not in LOCALES:
        raise ValueError(f"unknown locale {locale!r}; choose one of {', '.join(LOCALES)}")
    merged: dict[str, str] = {}
    for name, entry in catalog_files(locale):
        texts = _flatten(yaml.safe_load(entry.read_text(encoding="utf-8")) or {})
        clash = set(texts) & set(merged)
        if clash:
            raise ValueError(f"{name}/texts/{locale}.yaml repeats keys: {', '.join(sorted(clash))}")
        merged.update(texts)
    return merged


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def override_problem(template: str, default: str) -> str | None:
    """Why an override cannot stand in for the catalog text `default`, or None when it can.

    It may use the default's placeholders (any of them, in any order, or none), each as a plain ``{name}``;
    an unknown one (a typo such as ``{pointz}``), a positional ``{}``, a format spec or a stray brace would
    make every use of the text fail. A literal brace is written ``{{`` or ``}}``.
    """
    allowed = placeholders(default)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        return f"is not a valid text ({exc}); write a literal brace as {{{{ or }}}}"
    known = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "none"
    for name, spec, conversion in fields:
        if name is None:
            continue  # literal text
        if name not in allowed:
            return f"uses the unknown placeholder {{{name}}} (this text has: {known})"
        if spec or conversion:
            return f"formats {{{name}}}; write it as plain {{{name}}}"
    return None


class Catalog:
    """Texts of one locale; `t("common.usage", usage="/help")` formats one, `n(key, count, ...)` one with
    plural forms."""

    def __init__(self, locale: str, overrides: dict[str, str] | None = None) -> None:
        self.locale = locale
        self._texts = load_catalog(locale)
        if overrides:
            unknown = set(overrides) - set(self._texts)
            if unknown:
                raise ValueError(f"unknown message keys in overrides: {', '.join(sorted(unknown))}")
            for key in sorted(overrides):
                problem = override_problem(overrides[key], self._texts[key])
                if problem is not None:
                    raise ValueError(f"messages.{key} {problem}")
            self._texts.update(overrides)

    def has(self, key: str) -> bool:
        return key in self._texts

    def usages(self, prefix: str) -> list[str]:
        """The usage lines of a command whose texts are under `prefix`: ``<prefix>.usage`` first, then those
        of its sub-commands (``<prefix>_<sub>.usage``), in catalog order."""
        own = [f"{prefix}.usage"] if f"{prefix}.usage" in self._texts else []
        subs = [k for k in self._texts if k.startswith(f"{prefix}_") and k.endswith(".usage") and k.count(".") == 1]
        return [self._texts[k] for k in own + subs]

    def t(self, key: str, **values: object) -> str:
        template = self._texts[key]
        return template.format(**values) if values else template

    def n(self, key: str, count: int, **values: object) -> str:
        """A text with plural forms: `<key>.one` for a count of 1 where the locale has it, else
        `<key>.other`; `{count}` is filled in."""
        form = f"{key}.one" if count == 1 and f"{key}.one" in self._texts else f"{key}.other"
        return self.t(form, count=count, **values)

    def join(self, items: Iterable[object]) -> str:
        """Items as one list the way the locale writes it (`common.list_separator`: `、` in Chinese, `, ` in
        English), e.g. names, tiers or options."""
        return self._texts["common.list_separator"].join(str(item) for item in items)
