"""Reading YAML configuration strictly: one clear line per problem, never a traceback.

:func:`read_yaml` reads a mapping from a UTF-8 file and refuses what PyYAML lets through
silently: a key given twice (the second used to win without a word). :func:`check_values`
walks the raw mapping against a pydantic model before validation and refuses what pydantic
would coerce: ``true``/``false`` where a number is expected (``cash_krw: true`` became a
backtest on 1 KRW), ``.inf``/``.nan``, and absurd magnitudes (any number beyond
:data:`MAX_MAGNITUDE`). Each error is a :class:`~framework.errors.ConfigError` naming the file,
the line or key and what was expected.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel

from framework.errors import ConfigError

MAX_MAGNITUDE = 1e15
"""No number in a configuration of this tool is larger (KRW amounts stop at 10^13)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            seen.setdefault(key, key_node.start_mark.line)
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (first on line {first + 1}); keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping from a UTF-8 file.

    Raises ``ConfigError`` naming the file (and line) for an unreadable file, bytes that are
    not UTF-8, invalid YAML, a duplicate key or a top level that is not a mapping.
    """
    try:
        data_bytes = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc
    try:
        text = data_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data_bytes.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data_bytes[exc.start]:02x}); "
            "save the file as UTF-8",
            path=str(path),
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}", path=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top, got {type(data).__name__}",
            path=str(path),
        )
    return data


# --- values ---------------------------------------------------------------------------------


def _accepts_bool(annotation: Any) -> bool:
    """Whether a field of this annotation takes ``true``/``false`` on purpose."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(_accepts_bool(a) for a in args if a is not type(None))
    if origin is typing.Annotated:
        return _accepts_bool(args[0])
    if origin is Literal:
        return any(isinstance(a, bool) for a in args)
    # strings, models, containers: pydantic refuses a bool itself
    return not (inspect.isclass(annotation) and issubclass(annotation, int | float))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``Model`` or ``Model | None``)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _key(prefix: tuple[str, ...]) -> str:
    return ".".join(prefix)


_NUMBER_TEXT = re.compile(r"^[+-]?(\d[\d_]*)?\.?\d*([eE][+-]?\d+)?$")


def _check_number(value: Any, key: str, path: Path | str, problems: list[str]) -> None:
    if isinstance(value, str) and any(c.isdigit() for c in value) and _NUMBER_TEXT.match(value):
        try:  # YAML 1.1 reads 1e32 (no dot, no sign) as text: judge the number it means
            value = float(value.replace("_", ""))
        except ValueError:
            return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: {key}: expected a finite number (got {value!r})")
    elif abs(value) > MAX_MAGNITUDE:
        problems.append(
            f"{path}: {key}: {value!r} is out of any sensible range (at most {MAX_MAGNITUDE:.0e})"
        )


def _walk(
    raw: Any,
    model: type[BaseModel] | None,
    path: Path | str,
    prefix: tuple[str, ...],
    problems: list[str],
) -> None:
    if isinstance(raw, dict):
        fields = model.model_fields if model is not None else {}
        for name, value in raw.items():
            key = (*prefix, str(name))
            field = fields.get(str(name))
            annotation = field.annotation if field is not None else Any
            if isinstance(value, bool) and field is not None and not _accepts_bool(annotation):
                problems.append(
                    f"{path}: {_key(key)}: expected a number, got the boolean {str(value).lower()}"
                )
                continue
            _walk(value, _model_of(annotation) if field is not None else None, path, key, problems)
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            _walk(
                item, None, path, (*prefix[:-1], f"{prefix[-1]}[{i}]") if prefix else (), problems
            )
    else:
        _check_number(raw, _key(prefix), path, problems)


def check_values(
    raw: dict[str, Any], model: type[BaseModel], path: Path | str, prefix: tuple[str, ...] = ()
) -> None:
    """Refuse booleans for number fields of ``model``, non-finite numbers and numbers beyond
    :data:`MAX_MAGNITUDE` anywhere in ``raw``; ``ConfigError`` with one line per problem."""
    problems: list[str] = []
    _walk(raw, model, path, prefix, problems)
    if problems:
        raise ConfigError("\n".join(problems), path=str(path))


__all__ = ["MAX_MAGNITUDE", "check_values", "read_yaml"]
