"""One description per response: the views build the models the OpenAPI document is made of,
and no handler writes a hand-built dict."""

from __future__ import annotations

import ast
from pathlib import Path

from poold.api import models
from poold.ledger.models import STATEMENT_AMOUNTS

API = Path(__file__).resolve().parents[2] / "poold" / "api"


def test_statement_amounts_are_the_ledgers() -> None:
    assert tuple(models.StatementAmounts.model_fields) == STATEMENT_AMOUNTS
    assert [f.removesuffix("_btc") for f in models.StatementBtc.model_fields] == [
        f.removesuffix("_sat") for f in STATEMENT_AMOUNTS
    ]


def test_no_handler_answers_a_hand_built_dict() -> None:
    """Every JSON answer goes through `base.respond(model)` (errors through `json_error`):
    a `web.json_response({...})` in a route module would be a second description."""
    for module in ("pool.py", "holders.py", "admin.py", "ops.py", "app.py"):
        tree = ast.parse((API / module).read_text())
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "json_response"
            and isinstance(node.args[0] if node.args else None, ast.Dict)
        ]
        assert not calls, f"{module}:{calls[0].lineno} answers a dict, not a model"
