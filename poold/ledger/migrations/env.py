"""Alembic environment: poold passes the connection in; no alembic.ini is needed."""

from alembic import context

from poold.ledger.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
