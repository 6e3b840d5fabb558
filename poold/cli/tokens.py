"""Hashrate-token and API-token commands: `tokens import|price|prices|settle`,
`api token|tokens|revoke`. Heavy imports happen inside each command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poold.cli import (
    ConfigOption,
    api_app,
    fail,
    open_ledger_for,
    tokens_app,
)

if TYPE_CHECKING:
    from poold.config import Config


@api_app.command("token")
def api_token(
    config: ConfigOption,
    admin: Annotated[bool, typer.Option(help="a token for every endpoint")] = False,
    holder: Annotated[str | None, typer.Option(help="a token for this holder's pages")] = None,
    miner: Annotated[
        str | None, typer.Option(help="a token for this miner account's payout settings")
    ] = None,
) -> None:
    """Create an API token and print it once (only its SHA-256 digest is stored)."""
    from poold.api.auth import create_token, scope_for

    if admin + (holder is not None) + (miner is not None) != 1:
        raise fail("give exactly one of --admin, --holder NAME or --miner ACCOUNT")
    scope = (
        "admin"
        if admin
        else scope_for("holder", holder)
        if holder is not None
        else scope_for("miner", str(miner))
    )
    with open_ledger_for(config) as (_cfg, engine):
        secret = create_token(engine, scope)
    typer.echo(secret)


@api_app.command("tokens")
def api_tokens(
    config: ConfigOption,
) -> None:
    """List the live API tokens: id, scope, created (the secrets are never stored)."""
    from poold.api.auth import list_tokens

    with open_ledger_for(config) as (_cfg, engine):
        for t in list_tokens(engine):
            when = datetime.fromtimestamp(t.created_ms / 1000, UTC).isoformat(timespec="seconds")
            typer.echo(f"{t.id}\t{t.scope}\t{when}")


@api_app.command("revoke")
def api_revoke(
    token_id: Annotated[int, typer.Argument(help="the id `poold api tokens` shows")],
    config: ConfigOption,
) -> None:
    """Revoke an API token: it stops working within seconds everywhere."""
    from poold.api.auth import revoke_token

    with open_ledger_for(config) as (_cfg, engine):
        revoked = revoke_token(engine, token_id)
    if revoked is None:
        raise fail(f"no token {token_id} (revoked already?)", 1)
    typer.echo(f"revoked token {revoked.id} ({revoked.scope})")


@tokens_app.command("import")
def tokens_import(
    path: Path,
    config: ConfigOption,
) -> None:
    """Import token transfers from a CSV (id,ts,from,to,amount) or JSON file; idempotent."""
    from poold.tokens.transfers import TokenError, import_transfers
    from poold.tokens.transfers import parse_file as parse_transfers

    with open_ledger_for(config) as (_cfg, engine):
        try:
            result = import_transfers(engine, parse_transfers(path))
        except TokenError as exc:
            raise fail(f"tokens import: {exc}; nothing was imported", 1) from None
    typer.echo(json.dumps({"added": result.added, "unchanged": result.unchanged}))


def _period_start(text: str, cfg: Config) -> int:
    """A period given as unix seconds or a UTC date (YYYY-MM-DD: the period holding its noon)."""
    from poold.tokens.settle import period_of

    try:
        t = (
            int(text)
            if text.isdigit()
            else int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) + 43_200
        )
    except ValueError:
        raise fail(f"period {text!r}: give unix seconds or a date YYYY-MM-DD") from None
    return period_of(t, cfg.tokens)[0]


@tokens_app.command("price")
def tokens_price(
    period: Annotated[str, typer.Argument(help="the period: a UTC date or unix seconds")],
    btc_usd: Annotated[str, typer.Argument(help='BTC/USD for the period, exact ("65432.10")')],
    config: ConfigOption,
) -> None:
    """Enter the BTC/USD rate that converts a period's electricity and service costs."""
    from poold.tokens.settle import set_price
    from poold.tokens.transfers import TokenError

    with open_ledger_for(config) as (cfg, engine):
        start = _period_start(period, cfg)
        try:
            price = Fraction(btc_usd)
            set_price(engine, start, price, cfg.tokens)
        except (ValueError, ZeroDivisionError, TokenError) as exc:
            raise fail(f"tokens price: {exc}", 1) from None
    typer.echo(json.dumps({"period_start": start, "btc_usd": str(price)}))


@tokens_app.command("prices")
def tokens_prices(
    path: Path,
    config: ConfigOption,
) -> None:
    """Import BTC/USD prices from a CSV file with a header period,btc_usd (period: a UTC date
    or unix seconds); all or nothing."""
    from poold.tokens.settle import set_price
    from poold.tokens.transfers import TokenError, parse_price_file

    with open_ledger_for(config) as (cfg, engine):
        try:
            parsed = [(_period_start(p, cfg), price) for p, price in parse_price_file(path)]
            for start, price in parsed:
                set_price(engine, start, price, cfg.tokens)
        except TokenError as exc:
            raise fail(f"tokens prices: {exc}", 1) from None
    typer.echo(json.dumps({"prices": len(parsed)}))


@tokens_app.command("settle")
def tokens_settle(
    config: ConfigOption,
) -> None:
    """Settle every token period that is due (once each); say what the next one waits for."""
    from poold.tokens.settle import settle_due

    with open_ledger_for(config) as (cfg, engine):
        if not cfg.tokens.enabled:
            raise fail("tokens are not enabled: set [tokens] enabled = true")
        results = settle_due(engine, cfg.tokens)
    for r in results:
        if r.settled is not None:
            typer.echo(
                json.dumps(
                    {
                        "period_start": r.period_start,
                        "holders": len(r.settled.lines),
                        "holders_pot_sat": r.settled.holders_pot_sat,
                        "operator_retained_sat": r.settled.operator_retained_sat,
                    }
                )
            )
        elif r.waiting is not None:
            typer.echo(json.dumps({"period_start": r.period_start, "waiting": r.waiting}))
    typer.echo(f"{sum(r.settled is not None for r in results)} period(s) settled")
