"""Click options made from settings fields: one source for a setting's default, choices and help.

:func:`settings_option` reads a settings dataclass field (:mod:`tracing_bench.settings`,
:class:`tracing_bench.executors.ExecutorSettings`): its default, the values of its ``Literal`` type
as the choices, and its help text (``metadata["help"]``, :func:`tracing_bench.settings.setting`).
:func:`choice` makes a ``click.Choice`` of a ``Literal`` type that is no settings field.

>>> @settings_option(HarvestSettings, "pooling")     # --pooling [last|mean], default last, its help
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, Literal, Union

import click


def literal_choices(hint: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` type, also inside ``X | None``; ``()`` for any other type."""
    if typing.get_origin(hint) is Literal:
        return tuple(str(v) for v in typing.get_args(hint))
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(v for arg in typing.get_args(hint) for v in literal_choices(arg))
    return ()


def choice(literal: Any) -> click.Choice[str]:
    """``click.Choice`` of the values of a ``Literal`` type."""
    values = literal_choices(literal)
    if not values:
        raise TypeError(f"{literal!r} is not a Literal type")
    return click.Choice(values)


def _scalar_type(hint: Any) -> type | None:
    """``int``, ``float`` or ``str`` for a field of that type (or that type ``| None``); else ``None``."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    kinds = [a for a in args if a is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float, str) else None


def field_default(cls: type, name: str) -> Any:
    """The default of a dataclass field (its factory's value for a ``default_factory``)."""
    f = next((f for f in fields(cls) if f.name == name), None)
    if f is None:
        raise TypeError(f"{cls.__name__} has no field {name!r}")
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"{cls.__name__}.{name} has no default")


def settings_option(cls: type, name: str, *decls: str, **attrs: Any) -> Callable[[Any], Any]:
    """A ``click.option`` for the field ``name`` of the settings dataclass ``cls``.

    The flag is ``--<name with dashes>`` unless ``decls`` give others. The default is the field's
    (a tuple joined with commas, as a comma list is typed); a ``Literal`` field's values are the
    choices; an ``int``/``float`` field (``| None`` too) gets that type; a ``bool`` field with a
    ``False`` default is a flag; the help is the field's ``metadata["help"]``. The default is shown
    unless it is ``None`` or the option is a flag. ``attrs`` override any of these (say, a
    ``click.Path`` type, or a default the command line spells otherwise, such as ``all``).
    """
    f = next((f for f in fields(cls) if f.name == name), None)
    if f is None:
        raise TypeError(f"{cls.__name__} has no field {name!r}")
    hint = typing.get_type_hints(cls)[name]
    default = field_default(cls, name)
    kw: dict[str, Any] = {"default": ",".join(map(str, default)) if isinstance(default, tuple) else default}
    if "help" in f.metadata:
        kw["help"] = f.metadata["help"]
    choices = literal_choices(hint)
    if choices:
        kw["type"] = click.Choice(choices)
    elif hint is bool and default is False:
        kw["is_flag"] = True
    elif (kind := _scalar_type(hint)) in (int, float):
        kw["type"] = kind
    kw["show_default"] = kw["default"] is not None and not kw.get("is_flag", False)
    kw.update(attrs)
    return click.option(*(decls or (f"--{name.replace('_', '-')}",)), **kw)


__all__ = ["choice", "field_default", "literal_choices", "settings_option"]
