"""API tokens: random secrets shown once, stored as SHA-256 digests, each with one scope:
`admin` (everything) or `holder:<name>` (that holder's pages only). No aiohttp here."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from poold.ledger.models import ApiToken


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine: Engine, scope: str) -> str:
    """A new secret for `scope` ("admin" or "holder:<name>"); only its digest is kept."""
    if scope != "admin" and not (scope.startswith("holder:") and len(scope) > len("holder:")):
        raise ValueError('scope must be "admin" or "holder:<name>"')
    secret = "pk_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(ApiToken).values(
                digest=digest(secret), scope=scope, created_ms=int(time.time() * 1000)
            )
        )
    return secret


def scope_of(engine: Engine, secret: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(select(ApiToken.scope).where(ApiToken.digest == digest(secret)))
        return found.scalar()
