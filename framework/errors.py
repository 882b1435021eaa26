"""Exception tree of kis-trader, organised by what the caller must do.

::

    KisTraderError
    ├── ConfigError               fix the configuration; start-up stops
    │   └── StrategyLoadError     one strategy folder is broken; it is skipped, others load
    ├── DataError                 market data missing or malformed; the call is refused
    ├── StrategyError             a strategy hook raised; that strategy is isolated
    ├── FundsError                not enough free cash for a reservation; order not placed
    ├── RiskRejectedError         a pre-trade check refused the order; reported, not retried
    └── BrokerError               anything the broker (KIS or paper) answered or failed with
        ├── TransientBrokerError  network error / 5xx on a read: retry with backoff
        │   └── RateLimitError    KIS ``EGW00201`` (over the per-second limit): back off
        ├── AuthError             token rejected or expired: refresh the token once
        ├── CircuitOpenError      the circuit breaker is open: wait, do not send
        ├── OrderRejectedError    the broker refused the order: report, never retry
        │   └── InsufficientFundsError
        └── UnknownOrderOutcomeError  a submit timed out or failed ambiguously: look the
                                      order up before sending anything else

Never retry placing an order automatically: an :class:`UnknownOrderOutcomeError` is
resolved by looking the order up with the broker.
"""

from __future__ import annotations


class KisTraderError(Exception):
    """Base of every error raised by kis-trader."""


class ConfigError(KisTraderError):
    """A configuration file or value is invalid. Start-up stops.

    Parameters
    ----------
    message:
        Human readable description; it names the file, the key and what was expected.
    path:
        The file the error is in, when known.
    key:
        Dotted key path inside that file, when known (``risk_management.stop_loss_pct``).
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        super().__init__(message)
        self.path = path
        self.key = key


class StrategyLoadError(ConfigError):
    """A strategy folder could not be loaded (import error, no subclass, bad config)."""


class DataError(KisTraderError):
    """Market data is missing, empty or malformed (bad CSV header, unparsable date...)."""


class StrategyError(KisTraderError):
    """A strategy hook raised. The strategy is isolated; the others keep trading."""

    def __init__(self, strategy: str, hook: str, cause: BaseException):
        super().__init__(f"strategy {strategy!r} raised in {hook}: {cause!r}")
        self.strategy = strategy
        self.hook = hook
        self.cause = cause


class FundsError(KisTraderError):
    """A reservation asked for more KRW than is free (cash minus other reservations)."""


class RiskRejectedError(KisTraderError):
    """A pre-trade risk check refused an order. Reported, never retried."""


class BrokerError(KisTraderError):
    """The broker answered with an error or could not be reached.

    ``code`` is the broker's message code (KIS ``msg_cd``) when there is one.
    """

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.code = code


class TransientBrokerError(BrokerError):
    """Network error, timeout or 5xx on a read: safe to retry with backoff."""


class RateLimitError(TransientBrokerError):
    """Over the broker's request rate (KIS ``EGW00201``): back off, then retry reads."""


class AuthError(BrokerError):
    """The access token was rejected or has expired: refresh once, then repeat the read."""


class CircuitOpenError(BrokerError):
    """The circuit breaker is open after repeated failures; nothing is sent until it closes."""


class OrderRejectedError(BrokerError):
    """The broker refused the order (bad price, market closed...). Report; never retry."""


class InsufficientFundsError(OrderRejectedError):
    """The broker refused the order for lack of buying power."""


class UnknownOrderOutcomeError(BrokerError):
    """A submit timed out or failed ambiguously; the order may or may not exist.

    The caller must look the order up (KIS ``inquire-daily-ccld``) before sending anything
    else for it.
    """
