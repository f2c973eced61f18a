"""The configuration page's table, made from the settings themselves: each field's name, its
``OMS_*`` variable, its default and the docstring written under it in ``oms.config`` (or, for a
nested setting such as ``breaker``, in its own class). The docs site's hook (docs/hooks/settings.py)
puts the table into docs/configuration.md when the site is built, so a default or a description is
written once, beside the field, and the page cannot disagree with the code.

The docstrings are read from the source with ``ast``, as pydantic's ``use_attribute_docstrings``
would, without changing how ``Settings`` is built."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from oms.config import Settings


@dataclass(frozen=True)
class Row:
    """One line of the table: ``name`` is the dotted path (``breaker.wait_in_open``)."""

    name: str
    variable: str
    default: str
    description: str


def attribute_docstrings(cls: type) -> dict[str, str]:
    """Each annotated attribute's docstring (the string literal right under it), by name."""
    module = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = module.body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    for here, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(here, ast.AnnAssign)
            and isinstance(here.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[here.target.id] = inspect.cleandoc(after.value.value)
    return found


def rows(settings: type[Settings] = Settings) -> list[Row]:
    """Every setting, a nested setting's fields each on a line of their own after it."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    docs = attribute_docstrings(settings)
    made: list[Row] = []
    for name, field in settings.model_fields.items():
        variable = f"{prefix}{name}".upper()
        nested = _nested_class(field.annotation)
        if nested is None:
            made.append(Row(name, variable, _default(field.default), _described(docs.get(name, ""), field)))
            continue
        made.append(Row(name, variable, "see its fields", docs.get(name, "")))
        nested_docs = attribute_docstrings(nested)
        for inner, default in _nested_defaults(nested).items():
            made.append(
                Row(f"{name}.{inner}", f"{variable}_{inner.upper()}", _default(default), nested_docs.get(inner, ""))
            )
    return made


def markdown(settings: type[Settings] = Settings) -> str:
    """The table, in Markdown."""
    lines = ["| setting | environment variable | default | description |", "| --- | --- | --- | --- |"]
    for row in rows(settings):
        cells = (f"`{row.name}`", f"`{row.variable}`", row.default, _cell(row.description))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _nested_class(annotation: Any) -> type | None:
    if isinstance(annotation, type) and (dataclasses.is_dataclass(annotation) or issubclass(annotation, BaseModel)):
        return annotation
    return None


def _nested_defaults(cls: type) -> dict[str, Any]:
    if dataclasses.is_dataclass(cls):
        return {field.name: field.default for field in dataclasses.fields(cls)}
    assert issubclass(cls, BaseModel)
    return {name: field.default for name, field in cls.model_fields.items()}


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if value == "":
        return 'empty (`""`)'
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _described(text: str, field: FieldInfo) -> str:
    """The docstring, then what the field accepts: its choices, or its bounds."""
    extra: list[str] = []
    if typing.get_origin(field.annotation) is Literal:
        extra.append("One of " + ", ".join(f"`{choice}`" for choice in typing.get_args(field.annotation)) + ".")
    bounds = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds.append(f"at least {rule.ge}")
        elif isinstance(rule, annotated_types.Gt):
            bounds.append(f"more than {rule.gt}")
        elif isinstance(rule, annotated_types.Le):
            bounds.append(f"at most {rule.le}")
    if bounds:
        extra.append("Must be " + ", ".join(bounds) + ".")
    return " ".join([text, *extra]).strip()


def _cell(text: str) -> str:
    """One table cell: one line, reStructuredText's double backticks as Markdown's, no stray ``|``."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")
