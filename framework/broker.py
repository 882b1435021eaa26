"""``Broker``: the account side of a broker (cash, holdings, quotes).

=====================  ========  ==================================================
method                 required  returns
=====================  ========  ==================================================
``get_balance()``      yes       :class:`~framework.types.Balance` (KRW)
``get_holdings()``     yes       list of :class:`~framework.types.Holding`
``get_quote(code)``    yes       :class:`~framework.types.Quote`
``get_quotes(codes)``  no        dict code -> Quote (default: one ``get_quote`` each)
=====================  ========  ==================================================

Implementations: ``api.paper.PaperBroker`` (simulated) and ``api.kis_broker.KISBroker``.
Errors are those of :mod:`framework.errors` (``BrokerError`` and subclasses).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from framework.types import Balance, Holding, Quote


class Broker(abc.ABC):
    """Account state and prices. See the module docstring for the method table."""

    @abc.abstractmethod
    def get_balance(self) -> Balance:
        """Cash, orderable cash and holdings value, in KRW."""

    @abc.abstractmethod
    def get_holdings(self) -> list[Holding]:
        """Every stock held with a quantity above zero."""

    @abc.abstractmethod
    def get_quote(self, stock_code: str) -> Quote:
        """Latest price of ``stock_code``. Raises ``DataError`` for an unknown code."""

    def get_quotes(self, stock_codes: Iterable[str]) -> dict[str, Quote]:
        """Latest prices of several codes (adapters may batch)."""
        return {code: self.get_quote(code) for code in stock_codes}
