"""The `poold` command line (typer). `poold --help` lists every command; each lives in a module
of this package (`run`: run, demo, simulate, sim; `ledger`: migrate, ingest, settle, replay,
ledger, payout, account, nodes; `tokens`: tokens, api; `config`: config). Imports of the daemon,
ledger and accounting happen inside the commands, so `poold --help` answers at once.
Exit codes: 0 ok, 1 the work failed (named on stderr), 2 bad input or config.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from poold.config import Config

app = typer.Typer(add_completion=False, no_args_is_help=True, help="poold: pool share accounting")
config_app = typer.Typer(no_args_is_help=True, help="Check or show configuration.")
app.add_typer(config_app, name="config")
ledger_app = typer.Typer(no_args_is_help=True, help="Inspect the ledger.")
app.add_typer(ledger_app, name="ledger")
account_app = typer.Typer(no_args_is_help=True, help="Per-account payout settings.")
app.add_typer(account_app, name="account")
api_app = typer.Typer(no_args_is_help=True, help="HTTP API access tokens.")
app.add_typer(api_app, name="api")
tokens_app = typer.Typer(no_args_is_help=True, help="Hashrate tokens: transfers, prices, periods.")
app.add_typer(tokens_app, name="tokens")
nodes_app = typer.Typer(no_args_is_help=True, help="The stratum nodes feeding the ledger.")
app.add_typer(nodes_app, name="nodes")

#: The `--config FILE` option every command that reads a config takes.
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="TOML config file")]


def fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"poold: {msg}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def open_ledger_for(
    config: Path, *, migrate_schema: bool = False
) -> Iterator[tuple[Config, Engine]]:
    """Config and a ready ledger for one CLI command; their errors exit 2 with the message."""
    from poold.config import ConfigError, load_config
    from poold.ledger.db import LedgerError, open_ledger

    try:
        cfg = load_config(config)
        engine = open_ledger(cfg.ledger.url, migrate_schema=migrate_schema)
        try:
            yield cfg, engine
        finally:
            engine.dispose()
    except (ConfigError, LedgerError) as exc:
        raise fail(str(exc)) from None


def node_logs(cfg: Config) -> list[tuple[Path, int]]:
    """This config's share logs and their node ids: one, or one per worker process
    (`worker-i/` under [sharelog] path, node id node_id + i)."""
    st, path = cfg.stratum, cfg.sharelog.path
    if st.workers == 1:
        return [(path, st.node_id)]
    return [(path / f"worker-{i}", (st.node_id + i) % 256) for i in range(st.workers)]


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


# The commands register themselves on the apps above, in this order in `poold --help`.
for _module in ("run", "ledger", "tokens", "config"):
    importlib.import_module(f"poold.cli.{_module}")

__all__ = ["ConfigOption", "app", "main"]
