"""Every reversible migration's downgrade leaves the schema version the revision below it
names, and the chain comes back up again (SQLite). 0007 (the two-phase slices) is one way:
its downgrade refuses, naming why."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from poold.ledger.db import MIGRATIONS, SCHEMA_VERSION, make_engine, migrate


def test_each_downgrade_leaves_the_version_below_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    migrate(engine)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    revisions = list(ScriptDirectory.from_config(cfg).walk_revisions())  # newest first
    assert revisions[0].revision == SCHEMA_VERSION
    for rev in revisions:
        if rev.revision <= "0007":
            break
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "-1")
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version FROM poold_schema")).scalar_one()
        assert version == rev.down_revision, rev.revision
    assert migrate(engine) == SCHEMA_VERSION
    engine.dispose()
