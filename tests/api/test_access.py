"""Who may see what: revoking API tokens (CLI and admin API) and scoped live events (issue 11,
defect 10: there was no revocation, and /api/v1/events showed payout txids to anyone)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from poold.api.auth import list_tokens
from poold.api.ops import event_kinds_for
from tests.api.test_api import Api, api, check
from tests.api.test_events import read_events
from tests.helpers import PATIENCE_S, wait_for

__all__ = ["api"]


async def test_admin_lists_and_revokes_tokens(api: Api, ledger: sa.Engine) -> None:
    assert (await api.get("/api/v1/holders/alice", "alice"))[0] == 200
    status, body = await api.get("/api/v1/admin/tokens", "admin")
    assert status == 200
    check("/api/v1/admin/tokens", "get", 200, body)
    scopes = {t["scope"]: t["id"] for t in body["tokens"]}
    assert set(scopes) == {"admin", "holder:alice", "holder:bob", "miner:m0"}
    assert api.tokens["alice"] not in json.dumps(body)  # secrets are never shown
    assert (await api.get("/api/v1/admin/tokens", "alice"))[0] == 403
    url = f"{api.base}/api/v1/admin/tokens/{scopes['holder:alice']}"
    admin = {"Authorization": f"Bearer {api.tokens['admin']}"}
    async with api.session.delete(url, headers=admin) as r:
        assert r.status == 200
        revoked = await r.json()
    check("/api/v1/admin/tokens/{id}", "delete", 200, revoked)
    assert revoked == {"revoked": scopes["holder:alice"], "scope": "holder:alice"}
    # At once, although this process had the token in its scope cache a moment ago.
    status, body = await api.get("/api/v1/holders/alice", "alice")
    assert status == 401 and body == {"error": "unknown token"}
    async with api.session.delete(url, headers=admin) as r:
        assert r.status == 404
    async with api.session.delete(f"{api.base}/api/v1/admin/tokens/x", headers=admin) as r:
        assert r.status == 400
    assert [t.scope for t in list_tokens(ledger)] == ["admin", "holder:bob", "miner:m0"]


async def _stream(api: Api, token: str | None) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {api.tokens[token]}"} if token else {}
    r = await api.session.get(f"{api.base}/api/v1/events", headers=headers)
    assert r.status == 200
    return r


async def test_events_are_scoped(api: Api) -> None:
    assert (await api.get("/api/v1/events", "pk_not-a-real-token"))[0] == 401
    streams = [await _stream(api, t) for t in (None, "bob", "admin")]
    assert api.ctx is not None
    hub = api.ctx.events
    await wait_for(lambda: hub.subscriber_count == 3, "three event streams")
    for kind in ("payout_sent", "settlement_posted", "block_found"):
        hub.publish({"type": kind, "reference": f"{kind}-ref"})
    seen: list[list[Any]] = []
    for r, n in zip(streams, (1, 2, 3), strict=True):
        seen.append([e["type"] for e in await read_events(r, n)])
        r.close()
    assert seen == [
        ["block_found"],
        ["settlement_posted", "block_found"],
        ["payout_sent", "settlement_posted", "block_found"],
    ]
    assert event_kinds_for("holder:x") < event_kinds_for("admin")


def test_cli_lists_and_revokes(tmp_path: Path) -> None:
    from tests.e2e.test_durability import write_config

    cfg = write_config(tmp_path)
    db = tmp_path / "l.db"
    cfg.write_text(cfg.read_text() + f'\n[ledger]\nurl = "sqlite:///{db}"\n')

    def poold(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "poold", *args, "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
        )

    assert poold("migrate").returncode == 0
    assert poold("api", "token", "--holder", "carol").returncode == 0
    listed = poold("api", "tokens")
    token_id, scope, _created = listed.stdout.strip().split("\t")
    assert scope == "holder:carol"
    done = poold("api", "revoke", token_id)
    assert done.returncode == 0 and "revoked token" in done.stdout
    again = poold("api", "revoke", token_id)
    assert again.returncode == 1 and f"no token {token_id}" in again.stderr
    assert poold("api", "tokens").stdout.strip() == ""
