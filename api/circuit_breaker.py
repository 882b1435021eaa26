"""Circuit breaker around KIS calls (pybreaker) with KIS failure classification.

What counts as a failure (:func:`is_breaker_failure`): transport errors and 5xx answers
(``TransientBrokerError`` except ``RateLimitError``) and ambiguous order outcomes
(``UnknownOrderOutcomeError``). Business answers — rejections, insufficient funds, token
errors, ``EGW00201`` — do not count: KIS is up and answering.

After ``fail_max`` consecutive failures (default 5) the breaker opens: every guarded call
raises :class:`~framework.errors.CircuitOpenError` without being sent, for
``reset_timeout_s`` (default 30 s); then one trial call is let through (half-open) and its
result closes or re-opens the breaker. Cancel requests use ``guard(bypass=True)``: an order
can always be cancelled.

State changes are delivered as :class:`BreakerEvent` to listener callbacks (a notifier
subscribes with :meth:`KISCircuitBreaker.add_listener`); a failing listener is logged and
never breaks the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pybreaker

from framework.errors import (
    CircuitOpenError,
    RateLimitError,
    TransientBrokerError,
    UnknownOrderOutcomeError,
)
from utils.clock import KST

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """The breaker ``name`` went from ``old_state`` to ``new_state``
    (``"closed"``, ``"open"``, ``"half-open"``) at ``at`` (tz-aware KST)."""

    name: str
    old_state: str
    new_state: str
    at: datetime


BreakerListener = Callable[[BreakerEvent], None]


def is_breaker_failure(exc: BaseException) -> bool:
    """True if ``exc`` says KIS (or the network to it) is unhealthy."""
    if isinstance(exc, RateLimitError):
        return False
    return isinstance(exc, TransientBrokerError | UnknownOrderOutcomeError)


class _Relay(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: KISCircuitBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", None) or "closed"
        self._owner._emit(old, getattr(new_state, "name", str(new_state)))


class KISCircuitBreaker:
    """pybreaker ``CircuitBreaker`` with KIS classification and event callbacks.

    Parameters
    ----------
    fail_max:
        Consecutive failures that open the breaker.
    reset_timeout_s:
        Seconds the breaker stays open before a trial call.
    name:
        Shown in events and logs.
    listener:
        Optional first state-change callback.
    """

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 30.0,
        name: str = "kis",
        listener: BreakerListener | None = None,
    ) -> None:
        self.name = name
        self._listeners: list[BreakerListener] = [listener] if listener else []
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            exclude=[lambda exc: not is_breaker_failure(exc)],
            listeners=[_Relay(self)],
            name=name,
            throw_new_error_on_trip=False,
        )

    def __repr__(self) -> str:
        return f"KISCircuitBreaker(name={self.name!r}, state={self.state!r})"

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return str(self._breaker.current_state)

    @property
    def fail_counter(self) -> int:
        """Consecutive failures counted so far."""
        return int(self._breaker.fail_counter)

    def add_listener(self, listener: BreakerListener) -> None:
        """Subscribe ``listener(event)`` to state changes."""
        self._listeners.append(listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        self._listeners.remove(listener)

    def open(self) -> None:
        """Open the breaker now (manual kill switch)."""
        self._breaker.open()

    def close(self) -> None:
        """Close the breaker now and reset the failure count."""
        self._breaker.close()

    @contextmanager
    def guard(self, *, bypass: bool = False) -> Iterator[None]:
        """Run the ``with`` block under the breaker.

        Raises ``CircuitOpenError`` (nothing is sent) while the breaker is open, unless
        ``bypass`` (cancels). Exceptions of the block propagate unchanged after being
        counted (or not) as failures. Calls are not serialized: the block runs outside
        pybreaker's lock.
        """
        if bypass:
            yield
            return
        try:
            ctx = self._breaker.calling()
            ctx.__enter__()
        except pybreaker.CircuitBreakerError as exc:
            raise CircuitOpenError(
                f"KIS circuit breaker {self.name!r} is open after repeated failures; "
                "nothing sent"
            ) from exc
        try:
            yield
        except BaseException as exc:
            if not ctx.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            ctx.__exit__(None, None, None)

    def _emit(self, old: str, new: str) -> None:
        if old == new:
            return
        event = BreakerEvent(self.name, old, new, datetime.now(tz=KST))
        log.warning("KIS circuit breaker %s: %s -> %s", self.name, old, new)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("circuit breaker listener failed")
