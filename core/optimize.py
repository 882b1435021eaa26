"""Parameter optimisation on Optuna: the search space of a strategy's ``optimize:`` section,
each trial one run of :class:`core.backtest.Backtest` (protective exits on, as live).

* Single objective (one ``--metric``): TPE sampler, median pruner on the equity (KRW) at each
  year's end as the intermediate value.
* Several metrics (``--metric total_return,max_drawdown``): NSGA-II, no pruning; the best
  trials are the Pareto front.
* ``seed`` with ``jobs=1`` reproduces a study; with ``jobs > 1`` trials interleave between
  processes and the order (so the study) differs from run to run.
* ``jobs`` processes share one study in ``storage`` (any Optuna RDB URL; SQLite file in the
  output folder by default); each loads the bars once. Several machines join a study by
  giving the same PostgreSQL ``storage`` and ``study`` name. ``n_trials`` is the study's
  total: workers stop once trial number ``n_trials - 1`` has been handed out, so no trial
  runs twice and the study ends with exactly ``n_trials`` trials.
* A trial whose metric is undefined (no trade → no profit factor; flat equity → no Sharpe)
  or whose parameters the strategy rejects ends as failed with the reason in ``trials.csv``
  (``user_attrs_error``) and never becomes best.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError

from core.backtest import Backtest, BacktestSettings
from core.report import compute_metrics
from framework.errors import ConfigError, DataError
from strategies.config import LoadedStrategy, RiskManagement, StrategyLoader
from strategies.search_space import Categorical, FloatRange, IntRange, SearchSpace

log = logging.getLogger(__name__)

METRICS: dict[str, tuple[str, str]] = {
    "sharpe": ("sharpe", "maximize"),
    "sortino": ("sortino", "maximize"),
    "calmar": ("calmar", "maximize"),
    "profit_factor": ("profit_factor", "maximize"),
    "total_return": ("total_return_pct", "maximize"),
    "cagr": ("cagr_pct", "maximize"),
    "win_rate": ("win_rate_pct", "maximize"),
    "expectancy": ("expectancy_krw", "maximize"),
    "final_equity": ("final_equity", "maximize"),
    "max_drawdown": ("max_drawdown_pct", "minimize"),
}
"""``--metric`` name → (key of :func:`core.report.compute_metrics`, direction)."""


@dataclass
class OptimizeJob:
    """What one study optimises. ``metrics`` names keys of :data:`METRICS`."""

    strategy: str
    strategies_dir: Path
    data_dir: Path
    settings: BacktestSettings
    metrics: tuple[str, ...] = ("sharpe",)
    n_trials: int = 50
    seed: int | None = None
    storage: str = ""
    study_name: str = ""
    prune: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"sharpe"`` or ``"total_return,max_drawdown"`` → names; ``ConfigError`` if unknown."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError("--metric: give a metric name such as sharpe")
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--metric: unknown metric {name!r}{hint} (have: {', '.join(METRICS)})"
            )
    return names


def check_space(item: LoadedStrategy) -> SearchSpace:
    """The strategy's search space; ``ConfigError`` naming config.yaml when it is missing or
    names a key the strategy does not have (with "did you mean")."""
    path = item.folder / "config.yaml"
    space = item.config.optimize if item.config else None
    if space is None:
        raise ConfigError(f"{path}: optimize: no search space (add an optimize: section)")
    params_model = item.cls.Parameters if item.cls else None
    sections: list[tuple[str, dict[str, Any], list[str] | None]] = [
        ("parameters", space.parameters, list(params_model.model_fields) if params_model else None),
        ("risk_management", space.risk_management, list(RiskManagement.model_fields)),
    ]
    for section, ranges, valid in sections:
        for key in ranges:
            if valid is not None and key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; have: {', '.join(valid)}"
                raise ConfigError(
                    f"{path}: optimize.{section}.{key}: the strategy has no {section} key "
                    f"{key!r}{hint}"
                )
    return space


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    if isinstance(dist, IntRange):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatRange):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, Categorical):
        return trial.suggest_categorical(name, list(dist.choices))
    raise TypeError(f"unknown distribution {dist!r}")


def split_params(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Optuna names (``parameters.fast``) → ``{"parameters": {...}, "risk_management": {...}}``."""
    out: dict[str, dict[str, Any]] = {"parameters": {}, "risk_management": {}}
    for name, value in params.items():
        section, _, key = name.partition(".")
        out[section][key] = value
    return out


class Evaluator:
    """Loads the strategy and its bars once; :meth:`run` backtests one set of values."""

    def __init__(self, job: OptimizeJob):
        self.job = job
        items = StrategyLoader(root=job.strategies_dir).load_enabled(only=job.strategy)
        self.item = items[0]
        self.space = check_space(self.item)
        from core.data_collector import load_universe

        assert self.item.config is not None  # noqa: S101 - load_enabled returns loaded ones
        self.bars, _ = load_universe(job.data_dir, self.item.config.universe)
        if not self.bars:
            raise DataError(f"{job.data_dir}: no data file for {job.strategy}'s universe")

    def config_with(self, values: dict[str, dict[str, Any]]) -> Any:
        """The strategy config with ``values`` applied; ``ValueError`` when rejected."""
        config = self.item.config
        assert config is not None  # noqa: S101
        params = config.parameters
        try:
            if isinstance(params, BaseModel):
                params = type(params).model_validate(
                    {**params.model_dump(), **values["parameters"]}
                )
            else:
                params = {**params, **values["parameters"]}
            risk = RiskManagement.model_validate(
                {**config.risk_management.model_dump(), **values["risk_management"]}
            )
        except ValidationError as exc:
            raise ValueError("; ".join(e["msg"] for e in exc.errors())) from exc
        return config.model_copy(update={"parameters": params, "risk_management": risk})

    def run(
        self,
        values: dict[str, dict[str, Any]],
        start: date | None = None,
        end: date | None = None,
        on_year_end: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Metrics (:func:`core.report.compute_metrics`) of one backtest with ``values``."""
        assert self.item.cls is not None  # noqa: S101
        strategy = self.item.cls(self.config_with(values))
        settings = replace(
            self.job.settings,
            progress=False,
            start=start or self.job.settings.start,
            end=end or self.job.settings.end,
        )
        backtest = Backtest([strategy], self.bars, settings)
        backtest.on_year_end = on_year_end
        return compute_metrics(backtest.run())


def objective_values(metrics: dict[str, Any], names: tuple[str, ...]) -> list[float]:
    """The objective values; ``ValueError`` naming an undefined metric."""
    out = []
    for name in names:
        value = metrics.get(METRICS[name][0])
        if value is None or not math.isfinite(float(value)):
            raise ValueError(
                f"{name} is undefined for this run ({metrics.get('trades', 0)} trades)"
            )
        out.append(float(value))
    return out


def _make_study(job: OptimizeJob, seed: int | None, create: bool = True) -> Any:
    import optuna

    multi = len(job.metrics) > 1
    sampler = (
        optuna.samplers.NSGAIISampler(seed=seed) if multi else optuna.samplers.TPESampler(seed=seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        if job.prune and not multi
        else optuna.pruners.NopPruner()
    )
    storage = optuna.storages.RDBStorage(
        job.storage,
        engine_kwargs={"connect_args": {"timeout": 60}} if job.storage.startswith("sqlite") else {},
    )
    return optuna.create_study(
        study_name=job.study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=[str(METRICS[m][1]) for m in job.metrics],  # type: ignore[misc]
        load_if_exists=True,
    )


def run_worker(
    job: OptimizeJob,
    worker: int = 0,
    start: date | None = None,
    end: date | None = None,
    on_trial: Callable[[], None] | None = None,
) -> int:
    """Run trials of ``job``'s study until it has ``n_trials``; returns how many ran here."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    evaluator = Evaluator(job)
    seed = None if job.seed is None else job.seed + worker
    study = _make_study(job, seed)
    space = evaluator.space
    multi = len(job.metrics) > 1
    ran = 0
    while len(study.get_trials(deepcopy=False)) < job.n_trials:
        trial = study.ask()
        if trial.number >= job.n_trials:  # another worker took the last one meanwhile
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        trial.set_user_attr("worker", f"{os.getpid()}-{worker}")
        values = {
            section: {
                key: _suggest(trial, f"{section}.{key}", dist)
                for key, dist in getattr(space, section).items()
            }
            for section in ("parameters", "risk_management")
        }

        def year_end(year: int, equity_krw: int, trial: Any = trial) -> None:
            trial.report(float(equity_krw), year)
            if trial.should_prune():
                raise optuna.TrialPruned(f"equity {equity_krw:,} KRW at the end of {year}")

        try:
            metrics = evaluator.run(values, start, end, None if multi else year_end)
            result = objective_values(metrics, job.metrics)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except ValueError as exc:
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            for key in ("total_return_pct", "max_drawdown_pct", "sharpe", "trades"):
                trial.set_user_attr(key, metrics.get(key))
            study.tell(trial, result if multi else result[0])
        ran += 1
        if on_trial is not None:
            on_trial()
    return ran


def _worker_main(job: OptimizeJob, worker: int, start: date | None, end: date | None) -> None:
    run_worker(job, worker, start, end)


def optimize(
    job: OptimizeJob,
    jobs: int = 1,
    start: date | None = None,
    end: date | None = None,
    progress: bool = True,
) -> Any:
    """Run the study with ``jobs`` processes; returns the loaded ``optuna.Study``."""
    import optuna
    from tqdm import tqdm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _make_study(job, job.seed)  # create it once, before the workers race to
    bar = tqdm(total=job.n_trials, disable=not progress, unit="trial", desc=job.study_name)
    if jobs <= 1:
        run_worker(job, 0, start, end, on_trial=lambda: bar.update(1))
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(job, w, start, end)) for w in range(jobs)]
        for p in procs:
            p.start()
        study = optuna.load_study(study_name=job.study_name, storage=job.storage)
        while any(p.is_alive() for p in procs):
            done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
            bar.update(max(0, min(done, job.n_trials) - bar.n))
            time.sleep(0.5)
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise DataError(f"{sum(bool(p.exitcode) for p in procs)} optimisation worker(s) failed")
    bar.update(job.n_trials - bar.n)
    bar.close()
    return optuna.load_study(study_name=job.study_name, storage=job.storage)


def counted_trials(study: Any) -> list[Any]:
    """Trials of the study, without a surplus one a racing worker closed at once."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]


def best_trials(study: Any) -> list[Any]:
    """The best trial (single objective) or the Pareto front, best first objective first.
    ``DataError`` when no trial completed."""
    import optuna

    done = [t for t in counted_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        errors = {t.user_attrs.get("error") for t in counted_trials(study)} - {None}
        why = f": {sorted(errors)[0]}" if errors else ""
        raise DataError(f"no trial of study {study.study_name!r} completed{why}")
    if len(study.directions) == 1:
        return [study.best_trial]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(study.best_trials, key=lambda t: sign * t.values[0])


def write_outputs(
    study: Any, job: OptimizeJob, evaluator_config: Any, out: Path
) -> dict[str, Path]:
    """``best.json``, ``best_config.yaml``, ``trials.csv`` and ``optimization.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    best = best_trials(study)
    top = best[0]
    values = split_params(top.params)
    paths = {
        "best": out / "best.json",
        "config": out / "best_config.yaml",
        "trials": out / "trials.csv",
        "html": out / "optimization.html",
    }
    paths["best"].write_text(
        json.dumps(
            {
                "study": study.study_name,
                "strategy": job.strategy,
                "metrics": list(job.metrics),
                "trial": top.number,
                "values": top.values,
                **values,
                "user_attrs": top.user_attrs,
                "pareto_front": [
                    {"trial": t.number, "values": t.values, **split_params(t.params)} for t in best
                ]
                if len(best) > 1 or len(job.metrics) > 1
                else None,
                "trials": len(counted_trials(study)),
            },
            indent=2,
            ensure_ascii=False,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    config = evaluator_config(values)
    fragment = {}
    params = config.parameters
    fragment["parameters"] = (
        params.model_dump(mode="json") if isinstance(params, BaseModel) else params
    )
    fragment["risk_management"] = config.risk_management.model_dump(mode="json")
    header = (
        f"# best trial {top.number} of study {study.study_name} "
        f"({', '.join(job.metrics)} = {', '.join(f'{v:.4g}' for v in top.values)});\n"
        "# paste these sections into the strategy's config.yaml\n"
    )
    paths["config"].write_text(
        header + yaml.safe_dump(fragment, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    frame = study.trials_dataframe()
    if "user_attrs_surplus" in frame.columns:
        frame = frame[frame["user_attrs_surplus"] != True].drop(columns="user_attrs_surplus")  # noqa: E712
    frame.to_csv(paths["trials"], index=False)
    _write_study_html(study, job, paths["html"])
    return paths


def _objective(i: int) -> Callable[[Any], float]:
    return lambda trial: float(trial.values[i])


def _write_study_html(study: Any, job: OptimizeJob, path: Path) -> None:
    import optuna.visualization as vis

    figures = []
    targets: list[tuple[str, Callable[[Any], float] | None]]
    if len(job.metrics) == 1:
        targets = [(job.metrics[0], None)]
    else:
        figures.append(vis.plot_pareto_front(study, target_names=list(job.metrics)))
        targets = [(m, _objective(i)) for i, m in enumerate(job.metrics)]
    for name, target in targets:
        figures.append(vis.plot_optimization_history(study, target=target, target_name=name))
        try:
            figures.append(vis.plot_param_importances(study, target=target, target_name=name))
        except (RuntimeError, ValueError) as exc:  # too few completed trials
            log.warning("parameter importances not drawn: %s", exc)
        figures.append(vis.plot_slice(study, target=target, target_name=name))
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)
    ]
    title = f"Optimisation / 최적화: {job.strategy} · study {study.study_name}"
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{''.join(parts)}</body></html>",
        encoding="utf-8",
    )


# --------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True)
class Window:
    train_start: date
    train_end: date
    test_start: date
    test_end: date


def walk_forward_windows(first: date, last: date, k: int) -> list[Window]:
    """``k`` rolling windows: ``[first, last]`` cut into ``k + 1`` equal segments; window
    *i* trains on segment *i* and tests on segment *i + 1*. ``ConfigError`` if k < 1 or
    the segments would be shorter than 30 days."""
    if k < 1:
        raise ConfigError(f"--walk-forward must be ≥ 1, got {k}")
    span = (last - first).days + 1
    seg = span // (k + 1)
    if seg < 30:
        raise ConfigError(f"--walk-forward {k}: {span} days give segments under 30 days")
    bounds = [first + timedelta(days=seg * i) for i in range(k + 2)]
    bounds[-1] = last + timedelta(days=1)
    return [
        Window(
            bounds[i],
            bounds[i + 1] - timedelta(days=1),
            bounds[i + 1],
            bounds[i + 2] - timedelta(days=1),
        )
        for i in range(k)
    ]


def walk_forward(
    job: OptimizeJob, k: int, jobs: int, out: Path, progress: bool = True
) -> pd.DataFrame:
    """Optimise on each train window, evaluate the best values on its test window.

    Returns one row per window (also written to ``walk_forward.csv``): the dates, the best
    values, and ``is_<metric>`` / ``oos_<metric>`` plus return, drawdown and trades in and
    out of sample. Each window is study ``<study>-wf<i>`` in the same storage."""
    evaluator = Evaluator(job)
    times = pd.DatetimeIndex(sorted({t for f in evaluator.bars.values() for t in f.index}))
    first = max(times[0].date(), job.settings.start or date.min)
    last = min(times[-1].date(), job.settings.end or date.max)
    rows = []
    for i, w in enumerate(walk_forward_windows(first, last, k)):
        wjob = replace(job, study_name=f"{job.study_name}-wf{i}")
        study = optimize(wjob, jobs, w.train_start, w.train_end, progress)
        top = best_trials(study)[0]
        values = split_params(top.params)
        is_m = evaluator.run(values, w.train_start, w.train_end)
        oos = evaluator.run(values, w.test_start, w.test_end)
        row: dict[str, Any] = {
            "window": i,
            "train": f"{w.train_start}..{w.train_end}",
            "test": f"{w.test_start}..{w.test_end}",
            "params": json.dumps({**values["parameters"], **values["risk_management"]}),
        }
        for prefix, m in (("is", is_m), ("oos", oos)):
            for name in (*job.metrics, "total_return", "max_drawdown"):
                row[f"{prefix}_{name}"] = m.get(METRICS[name][0])
            row[f"{prefix}_trades"] = m.get("trades")
        rows.append(row)
        write_outputs(study, wjob, evaluator.config_with, out / f"wf{i}")
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "walk_forward.csv", index=False)
    return frame
