"""The OpenAPI 3.1 document of /api/v1 (served at /api/v1/openapi.json), generated from the
route table (`routes.ROUTES`: paths, parameters, security, errors) and the pydantic models
(`models`: every request and response body with its field descriptions and limits). The
tests validate every response against it."""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from poold.api import models as m
from poold.api.routes import ROUTES, Route

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "a malformed or unknown parameter, or a malformed body (the message names it)",
    401: "no valid token",
    403: "the token does not cover this resource",
    404: "no such resource",
    405: "the path does not take this method (the Allow header says which it takes)",
    500: "a bug: the server could not answer (it is logged)",
    503: "not available yet or now (no ledger, it did not answer, no job from bitcoind)",
}
#: What any route may answer: an unknown query parameter, a bug, a ledger not answering.
EVERY_ROUTE = (400, 500, 503)
SECURITY: dict[str, list[dict[str, list[str]]] | None] = {
    "public": None,
    "miners": [{}, {"bearer": []}],  # a token only when [api] public_miners = false
    "owner": [{"bearer": []}],
    "admin": [{"bearer": []}],
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(route: Route) -> dict[str, Any]:
    if isinstance(route.response, str):
        ok = {"content": {route.response: {"schema": {"type": "string"}}}}
    else:
        ok = {"content": {"application/json": {"schema": _ref(route.response)}}}
    op: dict[str, Any] = {
        "summary": route.summary,
        "parameters": [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in route.params
        ],
        "responses": {
            "200": {"description": "ok", **ok},
            **{
                str(code): {
                    "description": ERRORS[code],
                    "content": {"application/json": {"schema": _ref(m.Error)}},
                }
                for code in sorted({*route.errors, *EVERY_ROUTE})
            },
        },
    }
    security = SECURITY[route.access]
    if security is not None:
        op["security"] = security
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    return op


@functools.cache
def _document() -> dict[str, Any]:
    responses = {r.response for r in ROUTES if not isinstance(r.response, str)}
    bodies = {r.body for r in ROUTES if r.body is not None}
    keyed = [(model, "serialization") for model in sorted(responses | {m.Error}, key=str)]
    keyed += [(model, "validation") for model in sorted(bodies, key=str)]
    _, schemas = models_json_schema(keyed, ref_template=REF)  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "poold", "version": "1"},
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def document() -> dict[str, Any]:
    """The document (built once; callers get their own copy to change)."""
    return copy.deepcopy(_document())
