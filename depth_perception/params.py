"""Parameters declared once, on the dataclass fields that hold them.

A field that users can set (a ROS parameter, a `config/*.yaml` key, a CLI ``--set``) is written
with :func:`param`: its default, a description, and the rules (range, choices, read-only) live
there and nowhere else. :func:`check_fields` applies the rules to an instance (each dataclass
calls it from ``__post_init__``, so a library user gets the same errors as the node), and
:func:`exposed` lists the fields for `config.py`, which derives the ROS declarations, validation,
the default YAML profile and the README table from them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """How a dataclass field is exposed: ``name`` is the parameter's name inside its section
    (default: the field name), ``minimum``/``maximum`` its closed range, ``step`` the integer
    step of a ROS IntegerRange, ``choices`` the allowed values (every element, for a list)."""

    description: str
    name: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: int = 0
    choices: tuple[str, ...] | None = None
    read_only: bool = False


def param(default: Any, description: str, *, name: str | None = None,
          minimum: float | None = None, maximum: float | None = None, step: int = 0,
          choices: tuple[str, ...] | None = None, read_only: bool = False) -> Any:
    """A dataclass field exposed as a parameter (see :class:`Spec`)."""
    spec = Spec(description, name, minimum, maximum, step, choices, read_only)
    if isinstance(default, (list, tuple)):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata={"param": spec})
    return dataclasses.field(default=default, metadata={"param": spec})


def exposed(cls: type) -> list[tuple[str, dataclasses.Field, Spec]]:
    """(parameter name inside the section, field, spec) of every exposed field of ``cls``."""
    return [(f.metadata["param"].name or f.name, f, f.metadata["param"])
            for f in dataclasses.fields(cls) if "param" in f.metadata]


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def rule_violation(name: str, spec: Spec, default: Any, value: Any) -> str | None:
    """Why ``value`` cannot be the parameter ``name`` (typed like ``default``), or None."""
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            return f"{name} must be a list, got {value!r}"
        items = list(value) if spec.choices is not None else []
    else:
        expected = type(default)
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if expected is float:
            typed = is_number
        elif expected is int:
            typed = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        else:
            typed = isinstance(value, expected)
        if not typed:
            return f"{name} must be a {expected.__name__}, got {value!r}"
        if is_number and not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
        if spec.minimum is not None and value < spec.minimum or \
                spec.maximum is not None and value > spec.maximum:
            return f"{name} must be in [{spec.minimum}, {spec.maximum}], got {value!r}"
        items = [value]
    if spec.choices is not None:
        wrong = [x for x in items if x not in spec.choices]
        if wrong:
            return f"{name} must be {'among' if isinstance(default, tuple) else 'one of'} " \
                   f"{', '.join(spec.choices)}, not {wrong if isinstance(default, tuple) else wrong[0]!r}"
    return None


def check_fields(obj: Any, what: str = "", error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first exposed field of ``obj`` that breaks its rules (``what``,
    e.g. "metric", goes before the field name)."""
    for _, f, spec in exposed(type(obj)):
        label = f"{what} {f.name}" if what else f.name
        reason = rule_violation(label, spec, default_of(f), getattr(obj, f.name))
        if reason:
            raise error(reason)
