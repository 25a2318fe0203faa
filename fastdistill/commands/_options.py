"""Declarative command options: one dataclass per command; CLI, validation, resume keys and config.json derive from it.

Each field is declared with :func:`option` (default, help, choices, range, ``shapes_result``). From the dataclass:

- :func:`add_options` adds one argparse flag per field (``foo_bar`` -> ``--foo-bar``; a bool defaulting to False is a
  switch, one defaulting to None a ``--x/--no-x`` pair) and ``--config FILE``;
- :func:`parse_options` merges the dataclass defaults, the ``--config`` recipe (YAML or JSON, ``recipe:NAME`` for a
  shipped one, or a run's ``config.json``) and the flags given on the command line, in that order, and validates every
  field (type, choices, range; every float finite);
- :func:`as_config` is the ``config`` part of config.json, and :func:`result_keys` the fields that a ``--resume`` must
  leave unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fastdistill.errors import FastDistillError

RECIPE_PREFIX = "recipe:"
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list of strings"}
_BOUNDS = (("ge", operator.ge, ">="), ("gt", operator.gt, ">"), ("le", operator.le, "<="), ("lt", operator.lt, "<"))


def option(default: Any = None, help: str = "", *,
           choices: typing.Iterable | Callable[[], typing.Iterable] | None = None, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None, required: bool = False,
           positional: bool = False, metavar: str | None = None, shapes_result: bool = False,
           recorded: bool = True) -> Any:
    """A dataclass field with its CLI help and checks.

    ``choices`` may be a function returning them (read when parsing: registries can grow after import).
    ``shapes_result``: a ``--resume`` with another value is refused. ``recorded=False``: an action rather than a
    setting (``--resume``): left out of config.json and refused in a recipe.
    """
    if choices is not None and not callable(choices):
        choices = tuple(choices)
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "required": required,
            "positional": positional, "metavar": metavar,
            "shapes_result": shapes_result, "recorded": recorded}
    return dataclasses.field(default=default, metadata=meta)


def _choices(meta: Mapping[str, Any]) -> tuple | None:
    """A field's allowed values now (``choices`` given as a function is called)."""
    choices = meta["choices"]
    return tuple(choices()) if callable(choices) else choices


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _kind(cls: type, f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, whether None is allowed) of a field annotated ``T`` or ``T | None``."""
    hint = _hints(cls)[f.name]
    if typing.get_origin(hint) is list:  # list[str]: a positional taking one or more values
        return list, False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def _name(f: dataclasses.Field) -> str:
    """How the user spells the field on the command line."""
    if f.metadata["positional"]:
        return f.metadata["metavar"] or f.name.upper()
    return "--" + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argparse argument per field of ``cls``, plus ``--config``; omitted flags stay absent from the namespace."""
    for f in dataclasses.fields(cls):
        m = f.metadata
        kind, _ = _kind(cls, f)
        text = m["help"]
        if m["positional"]:
            parser.add_argument(f.name, nargs="+" if kind is list else "?", default=argparse.SUPPRESS,
                                metavar=_name(f), help=text)
            continue
        if f.default is not None and kind is not bool:
            text += f" (default: {f.default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if kind is bool:
            kwargs["action"] = "store_true" if f.default is False else argparse.BooleanOptionalAction
        else:
            kwargs.update(type=kind, choices=_choices(m), metavar=m["metavar"])
        parser.add_argument(_name(f), **kwargs)
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="options from a YAML/JSON recipe, a run's config.json or a shipped recipe:NAME "
                             f"({', '.join(recipe_names())}); flags given on the command line override it")


def parse_options(cls: type, namespace: argparse.Namespace, command: str) -> Any:
    """Defaults, then the ``--config`` file, then the flags given; validated."""
    values: dict[str, Any] = {}
    if getattr(namespace, "config", None) is not None:
        values.update(load_recipe(namespace.config, cls, command))
    values.update({f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)})
    options = cls(**values)
    validate(options)
    return options


def validate(options: Any) -> None:
    """Raise a one-line error naming the flag of the first field whose value has the wrong type, choice or range."""
    for f in dataclasses.fields(options):
        value, m = getattr(options, f.name), f.metadata
        if value is None and m["required"]:
            raise FastDistillError(f"{_name(f)} is required (on the command line or in the --config file)")
        _check_type(type(options), f, value, _name(f))
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise FastDistillError(f"{_name(f)} must be a finite number, got {value}")
        choices = _choices(m)
        if choices is not None and value not in choices:
            raise FastDistillError(f"{_name(f)} must be one of {', '.join(map(str, choices))}, got {value!r}")
        for key, test, text in _BOUNDS:
            if m[key] is not None and not test(value, m[key]):
                raise FastDistillError(f"{_name(f)} must be {text} {m[key]}, got {value}")


def _check_type(cls: type, f: dataclasses.Field, value: Any, where: str) -> None:
    kind, optional = _kind(cls, f)
    if value is None:
        if optional or f.metadata["required"]:
            return
        ok = False
    elif kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise FastDistillError(f"{where} must be {_TYPE_NAMES[kind]}{' or null' if optional else ''}, got {value!r}")


def as_config(options: Any) -> dict[str, Any]:
    """The ``config`` part of config.json: every recorded field; passed back as ``--config`` it reproduces the run."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.metadata["recorded"]}


def result_keys(cls: type) -> tuple[str, ...]:
    """Fields whose change refuses a ``--resume`` (marked ``shapes_result``)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["shapes_result"])


# --- recipe files ---------------------------------------------------------------------------------------------------

class _YAMLLoader(yaml.SafeLoader):
    """YAML 1.1 without its trap: ``1e-5`` (no dot) is a float, as in JSON and YAML 1.2."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$")
_YAMLLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def recipe_names() -> list[str]:
    """Names usable as ``--config recipe:NAME``."""
    return sorted(p.name[:-5] for p in (resources.files("fastdistill") / "recipes").iterdir()
                  if p.name.endswith(".yaml"))


def _read(spec: str) -> Any:
    if spec.startswith(RECIPE_PREFIX):
        name = spec[len(RECIPE_PREFIX):]
        if name not in recipe_names():
            raise FastDistillError(f"--config {spec}: no such shipped recipe; shipped: {', '.join(recipe_names())}")
        text = (resources.files("fastdistill") / "recipes" / f"{name}.yaml").read_text()
    else:
        path = Path(spec)
        if not path.is_file():
            raise FastDistillError(f"--config {spec}: file not found")
        text = path.read_text()
    is_json = spec.endswith(".json")
    try:
        return json.loads(text) if is_json else yaml.load(text, Loader=_YAMLLoader)
    except (ValueError, yaml.YAMLError) as exc:
        raise FastDistillError(f"--config {spec}: not valid {'JSON' if is_json else 'YAML'} "
                               f"({' '.join(str(exc).split())})") from None


def load_recipe(spec: str, cls: type, command: str) -> dict[str, Any]:
    """The options a recipe sets, checked against ``cls``: every key a field, every value of the field's type.

    A recipe maps option names to values, optionally with ``command: NAME``; a run's config.json (``command`` and
    ``config``) gives its ``config``.
    """
    data = _read(spec)
    if not isinstance(data, dict):
        raise FastDistillError(f"--config {spec}: expected a mapping of option names to values, got "
                               f"{type(data).__name__}")
    if isinstance(data.get("config"), dict) and "command" in data:
        made_for, data = data["command"], data["config"]
    else:
        data = dict(data)
        made_for = data.pop("command", command)
    if made_for != command:
        raise FastDistillError(f"--config {spec} is for `{made_for}`, not `{command}`; use "
                               f"`python -m fastdistill {made_for} --config {spec}`")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        f = fields.get(name)
        if f is None:
            close = difflib.get_close_matches(name, list(fields), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (see `python -m fastdistill {command} --help`)"
            raise FastDistillError(f"--config {spec}: unknown key {key!r} for `{command}`{hint}")
        if not f.metadata["recorded"]:
            raise FastDistillError(f"--config {spec}: key {key!r} is a command-line flag only ({_name(f)})")
        _check_type(cls, f, value, f"--config {spec}: key {key!r}")
        kind, _ = _kind(cls, f)
        values[name] = float(value) if kind is float and value is not None else value
    return values
