"""The OpenAPI 3.1 document of /api/v1 (served at /api/v1/openapi.json; tests check every route
and every response against it). Data only; the statement fields are poold.tokens' own."""

from __future__ import annotations

from typing import Any

from poold.ledger.models import STATEMENT_AMOUNTS

INT = {"type": "integer"}
STR = {"type": "string"}
RATES = {
    "type": "object",
    "properties": {"10m": INT, "1h": INT, "24h": INT},
    "required": ["10m", "1h", "24h"],
    "additionalProperties": False,
}


def _obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": False,
    }


def _list(item: str) -> dict[str, Any]:
    return _obj(
        {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "limit": INT,
            "offset": INT,
        }
    )


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Pool": _obj(
        {
            "hashrate_hs": RATES,
            "workers_online": INT,
            "miners_online": INT,
            "blocks": {"type": "object", "additionalProperties": INT},
            "scheme": STR,
            "fee": STR,
            "fee_percent": {"type": "string", "description": "the fee in percent, exact"},
            "round_effort": STR,
            "pplns_window_fill": STR,
            "pplns_unallocated": STR,
            "shares": _obj(
                {"accepted": INT, "rejected": {"type": "object", "additionalProperties": INT}}
            ),
        }
    ),
    "Block": _obj(
        {
            "height": INT,
            "hash": STR,
            "status": STR,
            "reward_sat": INT,
            "found_ms": INT,
            "finder": STR,
            "confirmations": INT,
        }
    ),
    "BlockList": _list("Block"),
    "Miner": _obj(
        {
            "account": STR,
            "hashrate_hs": RATES,
            "workers": {"type": "object", "additionalProperties": RATES},
            "shares_accepted": INT,
            "shares_rejected": {"type": "object", "additionalProperties": INT},
            "balance_sat": _obj({"immature": INT, "spendable": INT}),
        }
    ),
    "Credit": _obj(
        {
            "entry": INT,
            "reason": STR,
            "reference": STR,
            "time_ms": INT,
            "balance": STR,
            "amount_sat": INT,
        }
    ),
    "CreditList": _list("Credit"),
    "MinerPayout": _obj(  # a payout line, for a miner account or a token holder
        {
            "payout": INT,
            "status": STR,
            "txid": {"type": ["string", "null"]},
            "time_ms": INT,
            "amount_sat": INT,
            "address": STR,
        }
    ),
    "MinerPayoutList": _list("MinerPayout"),
    "Holder": _obj(
        {
            "holder": STR,
            "tokens": STR,
            "balance_sat": INT,
            "totals": _obj({f: INT for f in STATEMENT_AMOUNTS}),
        }
    ),
    "Statement": _obj(
        {
            "period_start": INT,
            "period_end": INT,
            "period": _obj({"start": STR, "end": STR}),
            "token_seconds": STR,
            "ths_nominal": STR,
            "ths_delivered": STR,
            "hashrate": _obj(
                {
                    "nominal_th_per_s": {"$ref": "#/components/schemas/Exact"},
                    "delivered_th_per_s": {"$ref": "#/components/schemas/Exact"},
                    "delivery_ratio": {"$ref": "#/components/schemas/Exact"},
                }
            ),
            **{f: INT for f in STATEMENT_AMOUNTS},
            "btc": {
                "type": "object",
                "description": "each amount in BTC, exact (8 decimals)",
                "additionalProperties": STR,
            },
            "btc_usd": STR,
            "btc_usd_decimal": {"$ref": "#/components/schemas/Exact"},
            "hashprice_sat_per_th_day": {"type": ["string", "null"]},
            "rates": {
                "type": "object",
                "description": "the period's w_per_th, usd_per_kwh, discount and "
                "service_usd_per_th_day (empty for periods settled before they were published)",
                "additionalProperties": {"$ref": "#/components/schemas/Exact"},
            },
            "electricity_kwh": {
                "oneOf": [{"$ref": "#/components/schemas/Exact"}, {"type": "null"}],
                "description": "the energy behind this line's electricity cost",
            },
            "period_pot_sat": INT,
            "operator_retained_sat": INT,
            "blocks": {"type": "array", "items": STR},
            "fpps_periods": {"type": "array", "items": INT},
        }
    ),
    "StatementList": _list("Statement"),
    "Transfer": _obj(
        {
            "id": STR,
            "ts": INT,
            "from": {"type": ["string", "null"]},
            "to": {"type": ["string", "null"]},
            "amount": STR,
            "balance_after": STR,
        }
    ),
    "TransferList": _list("Transfer"),
    "ImportResult": _obj({"added": INT, "unchanged": INT}),
    "Series": _obj(
        {
            "window": STR,
            "points": {"type": "array", "items": _obj({"t": INT, "hs": INT})},
        }
    ),
    "Price": _obj({"period_start": INT, "btc_usd": STR}),
    "Root": _obj(
        {
            "period_start": INT,
            "root": _obj({"hash": STR, "sums": {"type": "array", "items": INT}}),
            "inputs_digest": STR,
            "previous": STR,
            "commitment": STR,
            "inputs": {"type": "object"},
            "blocks": {"type": "array", "items": _obj({"hash": STR, "height": INT})},
        }
    ),
    "RootList": _list("Root"),
    "Exact": {
        "type": "object",
        "description": "exact: the value as an exact decimal when it has one ('97000.5'), "
        "else an exact fraction ('764/1220703125'); display: rounded, for people",
        "properties": {"exact": STR, "display": STR},
        "required": ["exact", "display"],
        "additionalProperties": False,
    },
    "Network": _obj(
        {
            "height": INT,
            "prev_hash": STR,
            "bits": STR,
            "difficulty": {"$ref": "#/components/schemas/Exact"},
            "coinbase_value_sat": INT,
            "fees_sat": INT,
            "transactions": INT,
            "hashprice_sat_per_th_day": {"$ref": "#/components/schemas/Exact"},
            "template_time": INT,
        }
    ),
    "PoolPayment": _obj(
        {
            "payout": INT,
            "status": STR,
            "txid": {"type": ["string", "null"]},
            "time_ms": INT,
            "total_sat": INT,
            "outputs": INT,
        }
    ),
    "PoolPaymentList": _list("PoolPayment"),
    "DailyEarning": _obj({"day": STR, "day_start": INT, "credited_sat": INT, "spendable_sat": INT}),
    "DailyEarningList": _list("DailyEarning"),
    "PayoutSettings": _obj(
        {
            "account": STR,
            "address": {"type": ["string", "null"]},
            "min_payout_sat": {"type": ["integer", "null"]},
            "effective_min_payout_sat": INT,
        }
    ),
    "Proof": {
        "type": "object",
        "description": "One holder's statement line of one period, its salt, the Merkle-sum "
        "path to the period's root, the period's inputs and commitment, and the chain after it: "
        "what verify.py checks",
        "properties": {
            "version": {"const": 1},
            "holder": STR,
            "salt": STR,
            "line": {"type": "object", "additionalProperties": INT},
            "path": {"type": "array", "items": {"type": "object"}},
            "period": {"type": "object"},
            "chain": {"type": "array", "items": {"type": "object"}},
            "anchors": {
                "type": "array",
                "description": "accepted blocks whose coinbase carries this period's "
                "commitment or a later one (OP_RETURN 'pold' + commitment)",
                "items": _obj({"hash": STR, "height": INT, "commitment": STR}),
            },
        },
        "required": ["version", "holder", "salt", "line", "path", "period", "chain"],
    },
    "NodeList": _obj(
        {
            "settle_through_ms": INT,
            "waiting": {"type": "array", "items": STR},
            "excluded": {"type": "array", "items": STR},
            "nodes": {
                "type": "array",
                "items": _obj(
                    {
                        "node_id": INT,
                        "status": {"enum": ["live", "stopped", "lapsed", "excluded"]},
                        "host": STR,
                        "lease_until_ms": INT,
                        "ingested_through_ms": INT,
                        "lag_ms": INT,
                    }
                ),
            },
        }
    ),
    "TokenList": _obj(
        {
            "tokens": {
                "type": "array",
                "items": _obj({"id": INT, "scope": STR, "created_ms": INT}),
            }
        }
    ),
    "Revoked": _obj({"revoked": INT, "scope": STR}),
}

WINDOW = [{"name": "window", "in": "query", "schema": {"enum": ["1h", "24h", "7d", "30d"]}}]
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", **_json("Error")} for c in codes}


def _get(
    summary: str, schema: str, *, params: list[Any] | None = None, errors: tuple[int, ...] = ()
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params or [],
            "responses": {"200": {"description": "ok", **_json(schema)}, **_errors(*errors)},
        }
    }


NAME = {"in": "path", "required": True, "schema": STR}
AUTH_ERRORS = (401, 403)


def document() -> dict[str, Any]:
    account = [{"name": "account", **NAME}]
    holder = [{"name": "holder", **NAME}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "poold", "version": "1"},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/v1/events": {
                "get": {
                    "summary": "Live events (Server-Sent Events): block_found, block_settled, "
                    "block_confirmed, block_orphaned, block_restored for anyone; fpps_booked and "
                    "settlement_posted with a holder or admin token; payout_sent with an "
                    "admin token only",
                    "responses": {
                        "200": {
                            "description": "an event stream",
                            "content": {"text/event-stream": {"schema": STR}},
                        },
                        **_errors(401),
                    },
                }
            },
            "/api/v1/pool": _get("Pool overview", "Pool"),
            "/api/v1/pool/blocks": _get("Blocks found", "BlockList", params=PAGE, errors=(400,)),
            "/api/v1/pool/hashrate": _get(
                "Pool hashrate over time", "Series", params=WINDOW, errors=(400,)
            ),
            "/api/v1/pool/payments": _get(
                "Every payout run, newest first (txid, time, total, outputs)",
                "PoolPaymentList",
                params=PAGE,
                errors=(400,),
            ),
            "/api/v1/network": _get(
                "The chain as the current job sees it: height, difficulty, hashprice",
                "Network",
                errors=(503,),
            ),
            "/api/v1/miners/{account}/workers/{worker}/hashrate": _get(
                "One worker's hashrate over time",
                "Series",
                params=[*account, {"name": "worker", **NAME}, *WINDOW],
                errors=(400, 401, 404),
            ),
            "/api/v1/miners/{account}/earnings/daily": _get(
                "A miner's credits per UTC day, newest first",
                "DailyEarningList",
                params=account + PAGE,
                errors=(400, 401, 404),
            ),
            "/api/v1/miners/{account}/settings": {
                **_get(
                    "The account's payout address and threshold (its miner token, or admin)",
                    "PayoutSettings",
                    params=account,
                    errors=AUTH_ERRORS,
                ),
                "put": {
                    "summary": "Change the payout address and/or threshold",
                    "parameters": account,
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "address": STR,
                                        "min_payout_sat": {"type": "integer", "minimum": 1},
                                    },
                                    "minProperties": 1,
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "the new settings", **_json("PayoutSettings")},
                        **_errors(400, *AUTH_ERRORS),
                    },
                },
            },
            "/api/v1/pool/nodes": _get(
                "The stratum nodes feeding the ledger and how far settlement may go", "NodeList"
            ),
            "/api/v1/miners/{account}/hashrate": _get(
                "A miner's hashrate over time",
                "Series",
                params=account + WINDOW,
                errors=(400, 401, 404),
            ),
            "/api/v1/miners/{account}": _get(
                "A miner account", "Miner", params=account, errors=(401, 404)
            ),
            "/api/v1/miners/{account}/credits": _get(
                "Its credits", "CreditList", params=account + PAGE, errors=(400, 401, 404)
            ),
            "/api/v1/miners/{account}/payouts": _get(
                "Its payouts", "MinerPayoutList", params=account + PAGE, errors=(400, 401, 404)
            ),
            "/api/v1/holders/{holder}": _get(
                "A token holder", "Holder", params=holder, errors=(*AUTH_ERRORS, 404)
            ),
            "/api/v1/holders/{holder}/statements": _get(
                "Its daily statements, newest first",
                "StatementList",
                params=holder + PAGE,
                errors=(400, *AUTH_ERRORS, 404),
            ),
            "/api/v1/holders/{holder}/transfers": _get(
                "Its token movements, newest first, with the balance after each",
                "TransferList",
                params=holder + PAGE,
                errors=(400, *AUTH_ERRORS, 404),
            ),
            "/api/v1/holders/{holder}/payouts": _get(
                "Its payouts",
                "MinerPayoutList",
                params=holder + PAGE,
                errors=(400, *AUTH_ERRORS, 404),
            ),
            "/api/v1/holders/{holder}/proofs/{period_start}": _get(
                "The holder's proof for one settled period: check it with verify.py",
                "Proof",
                params=[
                    *holder,
                    {"name": "period_start", "in": "path", "required": True, "schema": INT},
                ],
                errors=(400, *AUTH_ERRORS, 404),
            ),
            "/api/v1/statements/roots": _get(
                "The chain of statement commitments, newest first, with each period's inputs",
                "RootList",
                params=PAGE,
                errors=(400,),
            ),
            "/api/v1/holders/{holder}/statements.csv": {
                "get": {
                    "summary": "All its statements as CSV",
                    "parameters": holder,
                    "responses": {
                        "200": {"description": "ok", "content": {"text/csv": {"schema": STR}}},
                        **_errors(*AUTH_ERRORS, 404),
                    },
                }
            },
            "/api/v1/admin/transfers": {
                "post": {
                    "summary": "Import token transfers (JSON list), idempotent by id",
                    "responses": {
                        "200": {"description": "ok", **_json("ImportResult")},
                        **_errors(400, *AUTH_ERRORS),
                    },
                }
            },
            "/api/v1/admin/tokens": {
                "get": {
                    "summary": "Every live API token: id, scope, created (never the secret)",
                    "responses": {
                        "200": {"description": "ok", **_json("TokenList")},
                        **_errors(*AUTH_ERRORS),
                    },
                }
            },
            "/api/v1/admin/tokens/{id}": {
                "delete": {
                    "summary": "Revoke a token (at once here, within 5 s in other processes)",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": INT}],
                    "responses": {
                        "200": {"description": "ok", **_json("Revoked")},
                        **_errors(400, *AUTH_ERRORS, 404),
                    },
                }
            },
            "/api/v1/admin/prices": {
                "post": {
                    "summary": "Set a period's BTC/USD price",
                    "responses": {
                        "200": {"description": "ok", **_json("Price")},
                        **_errors(400, *AUTH_ERRORS),
                    },
                }
            },
        },
    }
