"""Every public ledger entry point converts database errors into `LedgerError`: none may let
a raw SQLAlchemy or driver error out (the scheduler would log it as a crash). The cut at each
statement in turn is `tests/simulation/test_faults.py::test_a_cut_at_every_statement_*`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

import poold.ledger
import poold.tokens
from poold.ledger import scheduler
from poold.ledger.db import CONVERTS, LedgerError

#: Entry points that convert on their own terms (and say so in their docstring).
CONVERT_THEMSELVES = {
    "poold.ledger.db.migrate",  # LedgerError naming the migration
    "poold.ledger.db.check_schema",  # LedgerError naming the schema
    "poold.ledger.events.tail_journal",  # logs and retries, never raises
    "poold.ledger.db.fenced",  # a transaction, used inside the entry points
}


def _modules() -> Iterator[Any]:
    for pkg in (poold.ledger, poold.tokens):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if ".migrations" not in info.name:
                yield importlib.import_module(info.name)


def _takes_engine(fn: Callable[..., Any]) -> bool:
    raw = inspect.unwrap(fn)
    params = list(inspect.signature(raw).parameters)
    if params and params[0] == "self":
        params = params[1:]
    hints = typing.get_type_hints(raw)
    return bool(params) and hints.get(params[0]) is Engine


def entry_points() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for mod in _modules():
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj) and _takes_engine(obj):
                found.append((f"{mod.__name__}.{name}", obj))
    return found


def test_there_are_entry_points_to_check() -> None:
    names = {n for n, _fn in entry_points()}
    assert {"poold.ledger.settle.settle_pending", "poold.ledger.payouts.run_payouts"} <= names
    assert len(names) > 30


@pytest.mark.parametrize(
    ("name", "fn"), entry_points(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_entry_point_converts(name: str, fn: Callable[..., Any]) -> None:
    assert getattr(fn, CONVERTS, False) or name in CONVERT_THEMSELVES, (
        f"{name} takes an Engine but is not a ledger_entry: a database error would leave it raw"
    )


def test_the_schedulers_own_reads_convert() -> None:
    """The reads the scheduler makes itself (the commitments, the gate): a cut is a LedgerError."""
    engine = create_engine("sqlite://")  # no schema: every statement fails
    with pytest.raises(LedgerError, match="_latest_commitments"):
        scheduler._latest_commitments(engine)
