"""API tokens: random secrets shown once, stored as SHA-256 digests, each with one scope:
`admin` (everything) or `holder:<name>` (that holder's pages only). A token is revoked by
deleting its row (`revoke_token`): it stops working at once in the process that revoked it and
within `SCOPE_TTL_S` of the API's scope cache elsewhere. No aiohttp here."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from poold.ledger.models import ApiToken


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


#: What a token other than admin's is for: a holder's pages, or a miner account's settings.
SCOPE_KINDS = ("holder", "miner")


def scope_for(kind: str, name: str) -> str:
    """The scope of a token for one holder or miner account (KIND:NAME)."""
    return f"{kind}:{name}"


def create_token(engine: Engine, scope: str) -> str:
    """A new secret for `scope` ("admin", or `scope_for(kind, name)`); only its digest is
    kept."""
    kind, _, name = scope.partition(":")
    if scope != "admin" and not (kind in SCOPE_KINDS and name):
        raise ValueError(
            f'scope must be "admin" or KIND:NAME with KIND one of {", ".join(SCOPE_KINDS)}'
        )
    secret = "pk_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(ApiToken).values(
                digest=digest(secret), scope=scope, created_ms=int(time.time() * 1000)
            )
        )
    return secret


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    scope: str
    created_ms: int


def list_tokens(engine: Engine) -> list[TokenInfo]:
    """Every live token (never its secret: only the digest is stored)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ApiToken.id, ApiToken.scope, ApiToken.created_ms).order_by(ApiToken.id)
        ).all()
    return [TokenInfo(int(i), str(s), int(c)) for i, s, c in rows]


def revoke_token(engine: Engine, token_id: int) -> TokenInfo | None:
    """Revoke one token by its id; None when there is no such token (revoked already)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(ApiToken.id, ApiToken.scope, ApiToken.created_ms).where(ApiToken.id == token_id)
        ).first()
        if row is None:
            return None
        conn.execute(delete(ApiToken).where(ApiToken.id == token_id))
    return TokenInfo(int(row[0]), str(row[1]), int(row[2]))


def scope_of(engine: Engine, secret: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(select(ApiToken.scope).where(ApiToken.digest == digest(secret)))
        return found.scalar()
