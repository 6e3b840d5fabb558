"""The ledger: SQLAlchemy models, migrations and exactly-once ingest of the share log.

Runs on SQLite (embedded default) and PostgreSQL with the same code. Money postings,
settlement and payouts build on these tables (the rest of the ledger issue).
"""
