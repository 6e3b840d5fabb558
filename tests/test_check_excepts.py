"""The lint that keeps failures from vanishing (scripts/check_excepts.py) refuses each
catch-all that neither re-raises nor logs, and passes the handlers that do."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "check_excepts", ROOT / "scripts" / "check_excepts.py"
)
assert _spec is not None and _spec.loader is not None
lint: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lint)

BAD = """
import contextlib
def a():
    try:
        f()
    except:
        pass
def b():
    try:
        f()
    except Exception:
        pass
def c():
    with contextlib.suppress(Exception):
        f()
def d():
    try:
        f()
    except (ValueError, BaseException) as exc:
        x = exc
"""
GOOD = """
import contextlib
def a():
    try:
        f()
    except Exception as exc:
        log.warning("f_failed", error=repr(exc))
def b():
    try:
        f()
    except Exception as exc:
        raise RuntimeError("f") from exc
def c():
    with contextlib.suppress(OSError):
        f()
def d():
    try:
        f()
    except Exception as exc:  # reported: the caller's result names it
        problems["f"] = str(exc)
def e():
    try:
        f()
    except ValueError:
        pass
"""


def test_every_catch_all_that_hides_a_failure_is_named(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(lint, "ROOT", tmp_path)
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text(BAD)
    good.write_text(GOOD)
    found = lint.problems(bad)
    assert sorted(int(m.split(":")[1]) for m in found) == [6, 11, 14, 19], found
    assert lint.problems(good) == []
    assert lint.main(["x", "bad.py"]) == 1
    assert lint.main(["x", "good.py"]) == 0


def test_the_project_passes() -> None:
    assert lint.main(["x"]) == 0
