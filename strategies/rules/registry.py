"""Component registry: name → class for triggers, conditions and actions.

Every component class declares a pydantic ``Params`` model (frozen, unknown keys rejected)
and registers itself under a short name used in ``config.yaml``::

    @register("trigger", "rsi")
    class RsiTrigger(Trigger):
        class Params(ComponentParams):
            period: int = Field(14, ge=2)
            ...

:func:`build` turns ``{"type": "rsi", "params": {...}}`` into an instance and raises
:class:`ComponentError` carrying the key path (``trigger.params.period``) and a readable
message; the rule loader adds the file and the rule id to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Kind = Literal["trigger", "condition", "action"]
KINDS: tuple[Kind, ...] = ("trigger", "condition", "action")


class ComponentParams(BaseModel):
    """Base of every component's ``Params`` model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Component:
    """Base of triggers, conditions and actions.

    Subclasses set ``Params`` and are registered with :func:`register`; ``name`` and
    ``kind`` are filled in by the decorator.
    """

    Params: ClassVar[type[ComponentParams]] = ComponentParams
    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def __init__(self, params: ComponentParams | Mapping[str, Any] | None = None):
        if params is None or isinstance(params, Mapping):
            params = self.Params.model_validate(dict(params or {}))
        # typed as Any: each subclass knows its own Params model
        self.params: Any = params

    def describe(self) -> str:
        """``name(k=v, ...)`` with the parameters written in the config (defaults omitted)."""
        data = self.params.model_dump(include=self.params.model_fields_set)
        items = [f"{k}={v}" for k, v in data.items() if v is not None]
        return f"{self.name}({', '.join(items)})"

    def __repr__(self) -> str:
        return f"<{self.kind} {self.describe()}>"


class ComponentError(ValueError):
    """A component spec is invalid. ``key`` is the dotted path inside the rule."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


_REGISTRY: dict[str, dict[str, type[Component]]] = {kind: {} for kind in KINDS}
C = TypeVar("C", bound=type[Component])


def register(kind: Kind, name: str) -> Callable[[C], C]:
    """Class decorator: make ``cls`` available as ``type: name`` for ``kind``."""

    def deco(cls: C) -> C:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice")
        cls.name = name
        cls.kind = kind
        _REGISTRY[kind][name] = cls
        return cls

    return deco


def catalogue(kind: Kind) -> dict[str, type[Component]]:
    """Registered components of ``kind`` by name (a copy)."""
    _load_builtins()
    return dict(_REGISTRY[kind])


def _load_builtins() -> None:
    # importing the modules registers their components
    from strategies.rules import actions, conditions, triggers  # noqa: F401


def _params_error(exc: ValidationError, key: str, model: type[BaseModel]) -> ComponentError:
    problems = []
    first_key = key
    for i, err in enumerate(exc.errors()):
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{key}.params.{loc}" if loc else f"{key}.params"
        if i == 0:
            first_key = where
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=1)
            hint = (f"did you mean '{close[0]}'?" if close
                    else f"valid keys: {', '.join(model.model_fields) or 'none'}")
            problems.append(f"{where}: unknown key; {hint}")
        elif err["type"] == "missing":
            problems.append(f"{where}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg} (got {err.get('input')!r})")
    message = "; ".join(p.split(": ", 1)[1] if j == 0 else p for j, p in enumerate(problems))
    return ComponentError(first_key, message)


def build(kind: Kind, spec: Any, key: str) -> Component:
    """Instantiate a component from its YAML spec ``{"type": name, "params": {...}}``.

    ``key`` is where the spec sits in the rule (``trigger``, ``conditions[1]``...).
    Raises :class:`ComponentError` for a spec that is not a mapping, an unknown ``type``
    (with "did you mean"), unknown keys or invalid parameter values.
    """
    _load_builtins()
    if isinstance(spec, list):
        raise ComponentError(key, f"expected one {kind} (a mapping with 'type'), got a list of "
                                  f"{len(spec)}; a rule has exactly one {kind}")
    if not isinstance(spec, Mapping):
        raise ComponentError(key, f"expected a mapping with 'type' and 'params', got {spec!r}")
    extra = set(spec) - {"type", "params"}
    if extra:
        bad = sorted(map(str, extra))[0]
        raise ComponentError(f"{key}.{bad}", "unknown key; a component has 'type' and 'params' "
                                             "(put parameters under 'params')")
    name = spec.get("type")
    table = _REGISTRY[kind]
    if not isinstance(name, str) or not name:
        raise ComponentError(f"{key}.type", f"required; one of {', '.join(sorted(table))}")
    cls = table.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"one of {', '.join(sorted(table))}"
        raise ComponentError(f"{key}.type", f"unknown {kind} '{name}'; {hint}")
    raw = spec.get("params") or {}
    if not isinstance(raw, Mapping):
        raise ComponentError(f"{key}.params", f"expected a mapping, got {raw!r}")
    try:
        params = cls.Params.model_validate(dict(raw))
    except ValidationError as exc:
        raise _params_error(exc, key, cls.Params) from None
    return cls(params)
