"""The engine's parts stay behind its front door: no module outside ``core/trader.py``
reads or writes the trader's funds, orders, portfolio, journal, risk, the adapters it holds,
or anything private of it: they ask the engine through its intent-level methods."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "config", "core", "db", "framework", "strategies", "utils")
ENGINE = {ROOT / "core" / "trader.py"}
PARTS = {"funds", "orders", "portfolio", "journal", "risk", "broker", "executor", "data_provider"}


def _is_trader(node: ast.expr) -> bool:
    """``trader``, ``self.trader``, ``session.trader`` …"""
    if isinstance(node, ast.Name):
        return node.id == "trader"
    return isinstance(node, ast.Attribute) and node.attr == "trader"


def reaches_in(source: str) -> list[tuple[int, str]]:
    """(line, attribute) of every access to an engine part or a private attribute of a
    trader in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and _is_trader(node.value)
            and (node.attr in PARTS or node.attr.startswith("_"))
        ):
            found.append((node.lineno, node.attr))
    return sorted(found)


def product_files() -> list[Path]:
    files = [ROOT / "main.py"]
    for package in PACKAGES:
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return [f for f in files if f not in ENGINE]


def test_the_scan_finds_reaching_in() -> None:
    source = (
        "def f(session, trader):\n"
        "    session.trader.funds.cash_krw\n"
        "    trader._storage_failed(None)\n"
        "    self.trader.portfolio = None\n"
        "    trader.positions()\n"
    )
    assert reaches_in(source) == [(2, "funds"), (3, "_storage_failed"), (4, "portfolio")]


def test_no_module_outside_the_engine_reaches_into_its_parts() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: trader.{attr}"
        for path in product_files()
        for line, attr in reaches_in(path.read_text(encoding="utf-8"))
    ]
    assert len(product_files()) > 50  # the scan sees the code base
    assert offenders == []
