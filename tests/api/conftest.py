"""API tests run on both ledger backends, like the ledger's own."""

from tests.ledger.conftest import ledger, ledger_url

__all__ = ["ledger", "ledger_url"]
