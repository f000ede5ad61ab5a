"""Typed configuration machinery: dataclass sections, validation with key paths, dotted overrides.

Every recipe section is a dataclass whose fields carry help text and bounds in their metadata (as peft's
``LoraConfig`` does). :func:`from_dict` turns a nested mapping (a parsed YAML recipe) into those dataclasses and
fails with :class:`ConfigError` naming the source file, the dotted key path and what was expected, suggesting the
closest key for typos. :func:`apply_overrides` merges ``section.key=value`` strings from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "option",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "parse_override",
    "normalize_overrides",
    "Overrides",
    "load_yaml",
    "deep_merge",
]

Overrides = Union[Mapping[str, Any], Sequence[str], None]
"""Recipe overrides: ``{"optim.lr": 1e-4}`` (values taken as they are) or ``["optim.lr=1e-4"]`` (values parsed as
YAML, as on the command line); ``None`` for none."""


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema; the message names source, key path and expectation."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}key '{key}': {problem}" if key else f"{where}{problem}")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Any = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with help text and optional bounds/choices checked by :func:`from_dict`.

    ``choices`` is a fixed sequence, or a registry (anything with ``names()``) read when a value is checked, so a
    name registered by a plug-in (``register_modality``) is valid in a recipe.
    """
    if choices is not None and not hasattr(choices, "names"):
        choices = tuple(choices)
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "", f"not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (e.g. ``"1e-4"`` -> 1e-4)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a mapping (section {tp.__name__}), got {value!r}")
        return from_dict(tp, value, source=source, prefix=key)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError:
                continue
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(source, key, f"expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(source, key, f"expected {len(args)} values ({_type_name(tp)}), got {value!r}")
            return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(source, key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(source, key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(source, key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(source, key, f"expected a string, got {value!r}")
    raise ConfigError(source, key, f"unsupported annotation {tp!r}")  # pragma: no cover - schema bug


def _check_bounds(value: Any, meta: Mapping[str, Any], key: str, source: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value is not None:
        valid = choices.names() if hasattr(choices, "names") else list(choices)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v not in valid:
                raise ConfigError(source, key, f"expected one of {valid}, got {v!r}")
    lo, hi = meta.get("min"), meta.get("max")
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for v in numbers:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and v < lo:
            raise ConfigError(source, key, f"expected a value >= {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ConfigError(source, key, f"expected a value <= {hi}, got {v!r}")


def _unknown_key(cls: type, key: str, prefix: str, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{_join(prefix, close[0])}'?" if close else f"; valid keys: {', '.join(names)}"
    return ConfigError(source, _join(prefix, key), f"unknown key{hint}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating keys, types and bounds recursively.

    ``__post_init__`` checks that raise ``ValueError`` are re-raised as :class:`ConfigError` at ``prefix``.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(cls, str(key), prefix, source)
        path = _join(prefix, key)
        converted = _convert(value, hints[key], path, source)
        _check_bounds(converted, fields[key].metadata, path, source)
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if err.source or not source:
            raise
        raise ConfigError(source, err.key, err.problem) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(source, prefix or cls.__name__, str(err)) from None


def to_dict(obj: Any) -> Any:
    """Plain nested dict/list form of a config (tuples become lists) for YAML/JSON output."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"optim.lr=1e-4"`` into (``["optim", "lr"]``, 1e-4); the value is parsed as YAML.

    A value holding `` #`` (or starting with ``#``) is taken literally as a string: on a command line it is part of
    a name (``data.root=/data/oct #1``), never a YAML comment, which would silently cut the value short.
    """
    if "=" not in text:
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. optim.lr=1e-4")
    key, raw = text.split("=", 1)
    if raw.lstrip().startswith("#") or re.search(r"\s#", raw):
        return _split_key(key, text), raw.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return _split_key(key, text), value


def _split_key(key: str, text: str) -> list[str]:
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", text, "expected a dotted key such as optim.lr")
    return key.split(".")


def normalize_overrides(overrides: Overrides) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` pairs from any :data:`Overrides` form; mapping values are kept exactly as given."""
    return [(key, value) for key, value, _ in _override_items(overrides)]


def _override_items(overrides: Overrides) -> list[tuple[str, Any, str]]:
    """``(dotted key, value, how the user wrote it)`` for each override (the last names it in errors)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a mapping or a list of KEY=VALUE strings, got the string {overrides!r}")
    if isinstance(overrides, Mapping):
        items = [(str(key), value, f"{key}={value!r}") for key, value in overrides.items()]
        for key, _, text in items:
            _split_key(key, text)
        return items
    items = []
    for text in map(str, overrides):
        parts, value = parse_override(text)
        items.append((".".join(parts), value, text))
    return items


def _check_path(cls: type, parts: list[str], source: str) -> None:
    """Fail early (naming the override) when a dotted key does not exist in the schema."""
    current: Any = cls
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(current):
            return  # inside a free-form mapping such as augment.params
        names = {f.name for f in dataclasses.fields(current)}
        if part not in names:
            raise _unknown_key(current, part, ".".join(parts[:i]), source)
        current = _unwrap_dataclass(typing.get_type_hints(current)[part])


def _unwrap_dataclass(tp: Any) -> Any:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return tp


def apply_overrides(cls: type, data: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Return a copy of ``data`` with the overrides merged in; unknown keys fail naming the override."""
    merged = _deep_copy(data)
    for key, value, text in _override_items(overrides):
        parts = key.split(".")
        _check_path(cls, parts, f"--set {text}")
        node = merged
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = _deep_copy(value)
    return merged


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else in ``update`` replaces ``base``."""
    out = _deep_copy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _deep_copy(value)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
