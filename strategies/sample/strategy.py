"""Sample strategy: SMA 5/20 cross + RSI(14) + volume surge.

Buy (when flat) if at least ``min_buy_signals`` (2) of these hold on the current bar:

1. golden cross: SMA(5) crosses above SMA(20);
2. RSI(14) leaves the oversold zone (previous bar < 30, this bar ≥ 30);
3. volume ≥ 1.5 × the mean volume of the previous 20 bars.

Confidence is ``min(95, 50 + 15 × conditions met)``; all three → ``STRONG_BUY``. The signal
carries a target of +10 % and a stop of −5 % (``risk_management``).

Sell (when holding) if any holds: dead cross, RSI(14) > 70, price ≥ average price × 1.10
(take profit), price ≤ average price × 0.95 (stop loss → ``STRONG_SELL``). Confidence
``min(90, 50 + 20 × conditions met)``. At most ``max_daily_trades`` (5) orders a day.
"""

from __future__ import annotations

import math

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from framework.bars import Bars
from framework.indicators import rsi, sma
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class SampleParameters(BaseModel):
    """``parameters`` of the sample strategy's config.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ma_short_period: int = Field(5, ge=1)
    ma_long_period: int = Field(20, ge=2)
    rsi_period: int = Field(14, ge=2)
    rsi_oversold: float = Field(30.0, gt=0, lt=100)
    rsi_overbought: float = Field(70.0, gt=0, lt=100)
    volume_multiplier: float = Field(1.5, gt=0)
    volume_period: int = Field(20, ge=1)
    min_buy_signals: int = Field(2, ge=1, le=3)

    @model_validator(mode="after")
    def _order(self) -> SampleParameters:
        if self.ma_short_period >= self.ma_long_period:
            raise ValueError("ma_short_period must be smaller than ma_long_period")
        if self.rsi_oversold >= self.rsi_overbought:
            raise ValueError("rsi_oversold must be below rsi_overbought")
        return self


class SampleStrategy(BaseStrategy):
    """SMA cross + RSI + volume; see the module docstring for the rules."""

    Parameters = SampleParameters
    numpy_bars = True  # the fast path: reads its indicator columns from the numpy window

    def indicators(self, bars: pd.DataFrame) -> dict[str, pd.Series]:
        p: SampleParameters = self.params
        return {
            "sma_short": sma(bars["close"], p.ma_short_period),
            "sma_long": sma(bars["close"], p.ma_long_period),
            "rsi": rsi(bars["close"], p.rsi_period),
            "volume_mean": sma(bars["volume"], p.volume_period).shift(1),
        }

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        p: SampleParameters = self.params
        if len(data) < max(p.ma_long_period, p.rsi_period, p.volume_period) + 2:
            return None
        s_now, s_prev = data.last("sma_short"), data.last("sma_short", 1)
        l_now, l_prev = data.last("sma_long"), data.last("sma_long", 1)
        r_now, r_prev = data.last("rsi"), data.last("rsi", 1)
        if any(math.isnan(v) for v in (s_now, s_prev, l_now, l_prev, r_now, r_prev)):
            return None
        price = data.last("close")
        metadata = {
            "sma_short": round(s_now, 2),
            "sma_long": round(l_now, 2),
            "rsi": round(r_now, 2),
            "close": price,
        }
        position = self.get_position(stock_code)
        if position is not None:
            return self._sell_signal(
                stock_code,
                position.avg_price,
                price,
                (s_prev, s_now, l_prev, l_now, r_now),
                metadata,
            )
        if self.trades_today >= self.risk.max_daily_trades:
            return None
        reasons = []
        if s_prev <= l_prev and s_now > l_now:
            reasons.append(
                f"golden cross: SMA{p.ma_short_period} {s_now:,.0f} > "
                f"SMA{p.ma_long_period} {l_now:,.0f}"
            )
        if r_prev < p.rsi_oversold <= r_now:
            reasons.append(f"RSI{p.rsi_period} left oversold: {r_prev:.1f} → {r_now:.1f}")
        vol_mean = data.last("volume_mean")
        volume = data.last("volume")
        if vol_mean > 0 and volume >= p.volume_multiplier * vol_mean:
            ratio = volume / vol_mean
            reasons.append(f"volume surge: {ratio:.1f}× the {p.volume_period}-bar mean")
            metadata["volume_ratio"] = round(ratio, 2)
        if len(reasons) < p.min_buy_signals:
            return None
        return Signal(
            SignalType.STRONG_BUY if len(reasons) == 3 else SignalType.BUY,
            stock_code,
            confidence=min(95.0, 50.0 + 15.0 * len(reasons)),
            target_price=(
                round(price * (1 + self.risk.take_profit_pct))
                if self.risk.take_profit_pct is not None
                else None
            ),
            stop_loss=(
                round(price * (1 - self.risk.stop_loss_pct))
                if self.risk.stop_loss_pct is not None
                else None
            ),
            reasons=reasons,
            metadata=metadata,
        )

    def _sell_signal(
        self,
        code: str,
        avg_price: float,
        price: float,
        values: tuple[float, float, float, float, float],
        metadata: dict[str, float],
    ) -> Signal | None:
        p: SampleParameters = self.params
        s_prev, s_now, l_prev, l_now, r_now = values
        reasons = []
        stop = False
        if s_prev >= l_prev and s_now < l_now:
            reasons.append(
                f"dead cross: SMA{p.ma_short_period} {s_now:,.0f} < "
                f"SMA{p.ma_long_period} {l_now:,.0f}"
            )
        if r_now > p.rsi_overbought:
            reasons.append(f"RSI{p.rsi_period} overbought: {r_now:.1f}")
        change = price / avg_price - 1.0
        take, stop_pct = self.risk.take_profit_pct, self.risk.stop_loss_pct
        if take is not None and change >= take:
            reasons.append(f"take profit: {change:+.1%} from {avg_price:,.0f}")
        elif stop_pct is not None and change <= -stop_pct:
            reasons.append(f"stop loss: {change:+.1%} from {avg_price:,.0f}")
            stop = True
        if not reasons:
            return None
        return Signal(
            SignalType.STRONG_SELL if stop else SignalType.SELL,
            code,
            confidence=min(90.0, 50.0 + 20.0 * len(reasons)),
            reasons=reasons,
            metadata={**metadata, "change_pct": round(change * 100, 2)},
        )
