"""The ``optimize:`` section of a strategy's ``config.yaml``: the search space of
``python main.py optimize``.

::

    optimize:
      metric: sharpe                 # default objective (see core.optimize.METRICS)
      parameters:                    # keys of the strategy's parameters
        fast: {type: int, low: 5, high: 30, step: 5}
        slow: {type: int, low: 40, high: 200, step: 20}
        mode: {type: categorical, choices: [close, typical]}
      risk_management:               # keys of risk_management
        stop_loss_pct: {type: float, low: 0.02, high: 0.15, log: true}
        trailing_stop_pct: {type: categorical, choices: [null, 0.05, 0.1]}

``int`` and ``float`` take ``low`` ≤ ``high`` and either ``step`` (> 0; the values are
``low, low + step, …`` up to ``high``) or ``log: true`` (sampled on a log scale, ``low`` > 0);
``categorical`` takes a non-empty list of ``choices`` (strings, numbers, booleans or null).
Whether a key exists in the strategy is checked when the study starts (the names depend on
the strategy's ``Parameters``), with "did you mean" for a typo.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Choice = str | int | float | bool | None


class IntRange(BaseModel):
    """Whole numbers from ``low`` to ``high`` inclusive, every ``step`` or on a log scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} is above high {self.high}")
        if self.log and self.step != 1:
            raise ValueError("log: true cannot be combined with a step other than 1")
        if self.log and self.low < 1:
            raise ValueError(f"log: true needs low ≥ 1, got {self.low}")
        return self


class FloatRange(BaseModel):
    """Real numbers from ``low`` to ``high`` inclusive, every ``step``, or on a log scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} is above high {self.high}")
        if self.log and self.step is not None:
            raise ValueError("log: true cannot be combined with a step")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}")
        return self


class Categorical(BaseModel):
    """One of ``choices`` (at least one; no repeats)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["categorical"]
    choices: tuple[Choice, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Categorical:
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError("choices must not repeat")
        return self


Distribution = Annotated[IntRange | FloatRange | Categorical, Field(discriminator="type")]


class SearchSpace(BaseModel):
    """The ``optimize:`` section: ranges for ``parameters`` and ``risk_management`` keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str | None = None
    parameters: dict[str, Distribution] = Field(default_factory=dict)
    risk_management: dict[str, Distribution] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_empty(self) -> SearchSpace:
        if not self.parameters and not self.risk_management:
            raise ValueError("give at least one range under parameters or risk_management")
        return self
