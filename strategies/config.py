"""Strategy configuration (``config.yaml``) schema and the :class:`StrategyLoader`.

A strategy folder is ``strategies/<name>/`` holding ``config.yaml`` and, for a Python
strategy, ``strategy.py`` with exactly one :class:`~strategies.base.BaseStrategy` subclass.
``config.yaml`` keys::

    enabled: true                 # bool; disabled strategies are listed but not run
    type: python                  # python (default) | rules (built-in rule interpreter)
    universe: ["005930", "000660"]  # quoted 6-character KRX codes, or a file of codes
                                  # (relative to the folder), or kospi200/kosdaq150/…,
                                  # or a screen run before each open:
    # universe:
    #   screen: volume_rank       # volume_rank | condition | hook (select_universe)
    #   condition: "내 조건식"     # condition: the HTS condition's name (KIS_HTS_ID user)
    #   candidates: kospi200      # the pool (list, file or name): a backtest screens it,
    #                             # the hook gets its bars, live data is loaded for it
    #   include: ["069500"]       # always in (a safe asset); holdings always are too
    #   cap: 100                  # most codes a day (include and holdings come on top)
    timeframe: daily              # daily | minute
    timeframes: [daily, minute]   # instead of timeframe: several; generate_signal is called
                                  # with each frame and its name (first = the main one)
    allocation: 1.0               # fraction of account equity this strategy may use (0, 1]
    lookback_bars: 250            # rows of the ``data`` DataFrame (int >= 1, or all)
    max_consecutive_errors: 3     # failures in a row of one hook that disable the strategy
    parameters: {...}             # free-form, or validated by the class's ``Parameters``
    decide_at: null               # "HH:MM": live, decide a daily strategy once a day then
    risk_management:
      stop_loss_pct: 0.05         # fraction below the average price (null = off)
      take_profit_pct: 0.10       # fraction above the average price (null = off)
      trailing_stop_pct: null     # fraction below the highest high since entry
      max_position_size: 0.10     # per stock, fraction of equity
      max_daily_trades: 5         # orders per day
      max_positions: null         # stocks held at once (null = no cap)
      max_holding_days: null      # sell at the next open after this many sessions held
      exit_at_close: false        # sell every position at the session's close (intraday)
    optimize: {...}               # search space of ``python main.py optimize``
                                  # (see strategies.search_space)

Every error is a :class:`~framework.errors.ConfigError` whose message names the file, the key,
what was expected and, for a misspelt key, the nearest valid key.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import ModuleType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from config.yaml_input import check_values
from config.yaml_input import read_yaml as _read_yaml
from framework.errors import ConfigError, StrategyLoadError
from framework.types import validate_code
from strategies.base import BaseStrategy
from strategies.search_space import SearchSpace

logger = logging.getLogger(__name__)

STRATEGIES_DIR = Path(__file__).resolve().parent


class RiskManagement(BaseModel):
    """Per-strategy risk limits (fractions, not percent: ``0.05`` = 5 %)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stop_loss_pct: float | None = Field(0.05, gt=0, lt=1)
    take_profit_pct: float | None = Field(0.10, gt=0)
    max_position_size: float = Field(0.10, gt=0, le=1.5)
    max_daily_trades: int = Field(5, ge=0)
    trailing_stop_pct: float | None = Field(None, gt=0, lt=1)
    max_positions: int | None = Field(None, ge=1)
    max_holding_days: int | None = Field(None, ge=1)
    exit_at_close: bool = False


class UniverseScreen(BaseModel):
    """``universe:`` as a screen (see the module docstring); run before each open."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    screen: Literal["volume_rank", "condition", "hook"]
    condition: str | None = None
    candidates: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    cap: int = Field(100, ge=1, le=1000)


def _codes_of(value: Any, what: str) -> tuple[str, ...]:
    """A list of codes, or a file / named set (:mod:`utils.symbols`) resolved to codes."""
    if isinstance(value, str):
        from utils.symbols import default_symbols, read_code_list

        path = Path(value).expanduser()
        codes = read_code_list(path) if path.is_file() else default_symbols().members(value)
        if not codes:
            raise ValueError(f"{what} {value!r} holds no codes")
        return tuple(codes)
    if not isinstance(value, list | tuple):
        raise ValueError(f"{what}: expected a list of quoted 6-character KRX codes, e.g. "
                         "['005930'], a file of codes or a name such as kospi200")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(
                f"expected quoted 6-character codes such as '005930', got {item!r} "
                "(YAML reads unquoted numbers with leading zeros as numbers: quote them)"
            )
        validate_code(item)
    if len(set(value)) != len(value):
        raise ValueError("codes must not repeat")
    return tuple(value)


class StrategyConfig(BaseModel):
    """Validated ``config.yaml`` of one strategy.

    ``universe`` is always the codes the strategy may trade from (a screen's candidates and
    ``include``); ``universe_screen`` is set when ``universe:`` was a screen."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = ""
    description: str = ""
    enabled: bool = True
    type: Literal["python", "rules"] = "python"
    universe: tuple[str, ...] = Field(min_length=1)
    timeframe: Literal["daily", "minute"] = "daily"
    timeframes: tuple[Literal["daily", "minute"], ...] = ()
    """Several timeframes (``[daily, minute]``); empty: ``(timeframe,)``."""
    allocation: float = Field(1.0, gt=0, le=1)
    lookback_bars: int | Literal["all"] = 250
    max_consecutive_errors: int = Field(3, ge=1)
    parameters: Any = Field(default_factory=dict)
    risk_management: RiskManagement = RiskManagement()
    rules: list[dict[str, Any]] | None = None
    decide_at: time | None = None
    optimize: SearchSpace | None = None  # search space of `python main.py optimize`
    universe_screen: UniverseScreen | None = None

    @model_validator(mode="before")
    @classmethod
    def _screen(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("universe"), dict):
            return data
        data = dict(data)
        spec = dict(data["universe"])
        for key in ("candidates", "include"):
            spec[key] = _codes_of(spec[key], f"universe.{key}") if spec.get(key) else ()
        screen = UniverseScreen.model_validate(spec)
        if screen.screen == "condition" and not screen.condition:
            raise ValueError("universe: a condition screen needs condition: <HTS name>")
        pool = tuple(dict.fromkeys([*screen.candidates, *screen.include]))
        if not pool:
            raise ValueError("universe: a screen needs candidates: (a list, a file or a name "
                             "such as kospi200; the pool a backtest screens) or include:")
        data["universe_screen"] = screen
        data["universe"] = pool
        return data

    @field_validator("timeframes", mode="before")
    @classmethod
    def _timeframes(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("expected a list such as [daily, minute]")
        if len(set(value)) != len(value):
            raise ValueError("timeframes must not repeat")
        return tuple(value)

    @model_validator(mode="after")
    def _one_main_timeframe(self) -> StrategyConfig:
        if self.timeframes and "timeframe" in self.model_fields_set and (
            self.timeframe != self.timeframes[0]
        ):
            raise ValueError(
                f"timeframe {self.timeframe!r} and timeframes {list(self.timeframes)} disagree: "
                "give one of them (the first of timeframes is the main one)"
            )
        if self.timeframes:
            object.__setattr__(self, "timeframe", self.timeframes[0])
        return self

    @property
    def frames(self) -> tuple[str, ...]:
        """The timeframes the strategy decides on, the main one first."""
        return tuple(self.timeframes) or (self.timeframe,)

    @field_validator("decide_at", mode="before")
    @classmethod
    def _decide_at(cls, value: Any) -> Any:
        if value is None or isinstance(value, time):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 15:20 as the sexagesimal number 920
            value = f"{value // 60:02d}:{value % 60:02d}"
        if isinstance(value, str):
            try:
                return time.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f'expected a session time "HH:MM" such as "15:20", got {value!r}')

    @field_validator("universe", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return _codes_of(value, "universe")

    @field_validator("lookback_bars", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> Any:
        if value == "all" or (type(value) is int and value >= 1):
            return value
        raise ValueError("expected a whole number of bars ≥ 1 (e.g. 250) or 'all'")

    @property
    def lookback(self) -> int | None:
        """``lookback_bars`` as a row count, ``None`` for ``all``."""
        return None if self.lookback_bars == "all" else int(self.lookback_bars)


@dataclass
class LoadedStrategy:
    """One discovered strategy folder: its config and class, or the error that stopped it."""

    name: str
    folder: Path
    config: StrategyConfig | None = None
    cls: type[BaseStrategy] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def enabled(self) -> bool:
        return self.config is not None and self.config.enabled

    def create(self) -> BaseStrategy:
        """Instantiate the strategy. ``StrategyLoadError`` if it failed to load."""
        if self.cls is None or self.config is None:
            raise StrategyLoadError(self.error or f"strategy {self.name!r} did not load")
        return self.cls(self.config)


# --- error formatting --------------------------------------------------------------------


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _step(annotation: Any, part: Any) -> Any:
    """The annotation at ``part`` of a pydantic location inside ``annotation`` (a model's
    field, a dict's value, a list's item, or the union member ``part`` names); ``None``
    when the location leaves what the annotations describe."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if _is_model(annotation):
        found = annotation.model_fields.get(part) if isinstance(part, str) else None
        return None if found is None else found.annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    if origin in (Union, UnionType):
        members = [a for a in args if a is not type(None)]
        for member in members:  # the member pydantic tried: its tag or its name
            tags = [
                get_args(f.annotation)
                for f in (member.model_fields.values() if _is_model(member) else ())
                if get_origin(f.annotation) is Literal
            ]
            if any(part in t for t in tags) or getattr(member, "__name__", None) == part:
                return member
        if len(members) == 1:  # X | None: no member in the location
            return _step(members[0], part)
    return None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``loc`` (for 'did you mean'): the one
    the location's earlier parts lead to, through fields, dict values, list items and
    union members; ``None`` when they lead to no model."""
    current: Any = model
    for part in loc[:-1]:
        current = _step(current, part)
        while get_origin(current) is Annotated:
            current = get_args(current)[0]
        if current is None:
            return None
    members = [a for a in get_args(current) if a is not type(None)]
    if not _is_model(current) and len(members) == 1:
        current = members[0]
    return current if _is_model(current) else None


def _keys_of(loc: tuple[Any, ...], data: Any, missing: bool) -> tuple[Any, ...]:
    """``loc`` with only the keys and list positions found in ``data`` (the validated
    input): pydantic also puts the member of a union it tried into the location (the
    ``int`` of ``fast.int.high`` for ``{type: int, ...}``), which is no key of the file.
    A missing key (``missing``) is kept at the end."""
    out: list[Any] = []
    for n, part in enumerate(loc):
        listed = isinstance(data, list | tuple) and isinstance(part, int) and 0 <= part < len(data)
        if listed or (isinstance(data, dict) and part in data):
            data = data[part]
        elif missing and n == len(loc) - 1:
            pass
        elif isinstance(data, dict | list | tuple) and isinstance(part, str):
            continue  # a union member's tag, not a key of the input
        else:
            data = None
        out.append(part)
    return tuple(out)


def format_validation_error(
    exc: ValidationError,
    path: Path | str,
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
    data: Any = None,
) -> str:
    """One line per problem: ``file: key: what was expected [did you mean ...]``.

    ``data`` (the input that was validated) keeps union members out of the key."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if data is not None:
            loc = _keys_of(loc, data, err["type"] == "missing")
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in prefix + loc)
        key = key.replace(".[", "[")
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, tuple(err["loc"]))
            choices = list(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), choices, n=1, cutoff=0.6)
            hint = (
                f"; did you mean '{close[0]}'?" if close
                else f"; valid keys: {', '.join(choices)}" if choices else ""
            )
            lines.append(f"{path}: {key}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{path}: {key}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {key}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping (:func:`config.yaml_input.read_yaml`: UTF-8, no duplicate keys);
    ``ConfigError`` naming the file and line for a missing or invalid file."""
    return _read_yaml(path)


def _relative_files(raw: dict[str, Any], folder: Path) -> None:
    """A universe file named relative to the strategy's folder becomes an absolute path."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and (folder / value).is_file():
            return str(folder / value)
        return value

    universe = raw.get("universe")
    if isinstance(universe, dict):
        raw["universe"] = {**universe, "candidates": fix(universe.get("candidates", ())),
                           "include": fix(universe.get("include", ()))}
    else:
        raw["universe"] = fix(universe)


def load_strategy_config(
    path: Path,
    name: str,
    parameters_model: type[BaseModel] | None = None,
    raw: dict[str, Any] | None = None,
) -> StrategyConfig:
    """Validate ``config.yaml`` at ``path`` for strategy ``name``.

    ``parameters_model`` (a strategy's ``Parameters``) validates the ``parameters`` section;
    ``raw`` is the file's content when the caller has read it already. Raises ``ConfigError``
    with one line per problem.
    """
    raw = dict(read_yaml(path) if raw is None else raw)
    raw.setdefault("name", name)
    _relative_files(raw, path.parent)
    check_values(raw, StrategyConfig, path)
    if parameters_model is not None and isinstance(raw.get("parameters"), dict):
        check_values(raw["parameters"], parameters_model, path, prefix=("parameters",))
    try:
        config = StrategyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, path, StrategyConfig, data=raw), path=str(path)
        ) from exc
    if parameters_model is not None:
        params_raw = raw.get("parameters") or {}
        try:
            params = parameters_model.model_validate(params_raw)
        except ValidationError as exc:
            msg = format_validation_error(
                exc, path, parameters_model, prefix=("parameters",), data=params_raw
            )
            raise ConfigError(msg, path=str(path)) from exc
        config = config.model_copy(update={"parameters": params})
    elif not isinstance(config.parameters, dict):
        raise ConfigError(
            f"{path}: parameters: expected a mapping", path=str(path), key="parameters"
        )
    return config


# --- discovery -----------------------------------------------------------------------------


def _rule_strategy_class() -> type[BaseStrategy]:
    from strategies.rules.strategy import RuleStrategy

    return RuleStrategy


BUILTIN_TYPES: dict[str, Callable[[], type[BaseStrategy]]] = {"rules": _rule_strategy_class}
"""``type:`` values of config.yaml that need no strategy.py, mapped to their class factory."""


def _import_strategy_module(folder: Path) -> ModuleType:
    if folder.parent == STRATEGIES_DIR and folder.name.isidentifier():
        # a folder of this package: import it under its package name, so that the classes
        # are the same objects as in `from strategies.<name>.strategy import ...`
        module_name = f"strategies.{folder.name}.strategy"
        if module_name in sys.modules:
            return sys.modules[module_name]
    else:
        module_name = f"kis_trader_strategies.{folder.name}"
    spec = importlib.util.spec_from_file_location(module_name, folder / "strategy.py")
    if spec is None or spec.loader is None:
        raise StrategyLoadError(f"{folder / 'strategy.py'}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise StrategyLoadError(
            f"{folder / 'strategy.py'}: import failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _find_strategy_class(module: ModuleType, path: Path) -> type[BaseStrategy]:
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseStrategy)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise StrategyLoadError(
            f"{path}: expected exactly one concrete BaseStrategy subclass, found {names}"
        )
    return found[0]


@dataclass
class StrategyLoader:
    """Discovers ``strategies/<name>/`` folders and loads each one on its own.

    A broken folder (import error, no or several subclasses, invalid config) is recorded with
    its error in the result and logged; the others still load.
    """

    root: Path = STRATEGIES_DIR
    skip: frozenset[str] = field(default_factory=lambda: frozenset({"rules", "__pycache__"}))

    def folders(self) -> list[Path]:
        if not self.root.is_dir():
            raise ConfigError(f"{self.root}: strategies folder not found", path=str(self.root))
        return sorted(
            p
            for p in self.root.iterdir()
            if p.is_dir()
            and p.name not in self.skip
            and not p.name.startswith((".", "_"))
            and (p / "config.yaml").is_file()
        )

    def load_one(self, folder: Path) -> LoadedStrategy:
        name = folder.name
        item = LoadedStrategy(name=name, folder=folder)
        try:
            raw = read_yaml(folder / "config.yaml")
            raw_type = raw.get("type", "python")
            if raw_type in BUILTIN_TYPES and not (folder / "strategy.py").is_file():
                cls = BUILTIN_TYPES[raw_type]()
            elif (folder / "strategy.py").is_file():
                cls = _find_strategy_class(_import_strategy_module(folder), folder / "strategy.py")
            else:
                raise StrategyLoadError(f"{folder}: no strategy.py (and type is {raw_type!r})")
            item.config = load_strategy_config(folder / "config.yaml", name, cls.Parameters, raw)
            if hasattr(cls, "validate_config"):
                cls.validate_config(item.config, folder / "config.yaml")
            item.cls = cls
        except ConfigError as exc:
            item.error = str(exc)
        except Exception as exc:  # a plugin must never take the loader down
            item.error = f"{folder}: {type(exc).__name__}: {exc}"
        if item.error:  # the caller shows the error (once); the log has it with -v
            logger.info("strategy %s not loaded: %s", name, item.error)
        return item

    def discover(self) -> list[LoadedStrategy]:
        """Every strategy folder, loaded or with its error, sorted by name."""
        return [self.load_one(folder) for folder in self.folders()]

    def load_enabled(self, only: str | None = None) -> list[LoadedStrategy]:
        """Loaded, enabled strategies (or just ``only``, enabled or not).

        Raises ``ConfigError`` when ``only`` names no folder or one that failed to load.
        """
        items = self.discover()
        if only is not None:
            match = [i for i in items if i.name == only]
            if not match:
                names = [i.name for i in items]
                close = difflib.get_close_matches(only, names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; have: {', '.join(names)}"
                raise ConfigError(f"unknown strategy {only!r}{hint}")
            if not match[0].ok:
                raise ConfigError(match[0].error or f"strategy {only!r} failed to load")
            return match
        return [i for i in items if i.ok and i.enabled]
