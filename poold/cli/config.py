"""`poold config check|dump`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from poold.cli import (
    config_app,
    fail,
)


@config_app.command("check")
def config_check(path: Path) -> None:
    """Validate a config file (and POOLD__ overrides) and the files it names (the TLS
    certificate and key); exit 2 naming the bad key."""
    from poold.config import ConfigError, load_config
    from poold.stratum.tls import TlsConfigError, server_context

    try:
        cfg = load_config(path)
        st = cfg.stratum
        if st.tls_listen and st.tls_cert is not None and st.tls_key is not None:
            server_context(st.tls_cert, st.tls_key)
    except (ConfigError, TlsConfigError) as exc:
        raise fail(f"config error: {exc}") from None
    typer.echo(f"{path}: ok")


@config_app.command("dump")
def config_dump(
    path: Path,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="print passwords too (default: ***)")
    ] = False,
) -> None:
    """Print the effective configuration (file + environment + defaults) as JSON, with
    passwords replaced by *** unless --show-secrets."""
    from poold.config import ConfigError, load_config, redacted

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise fail(f"config error: {exc}") from None
    data = cfg.model_dump(mode="json") if show_secrets else redacted(cfg)
    typer.echo(json.dumps(data, indent=2))
