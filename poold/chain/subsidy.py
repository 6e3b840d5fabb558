"""The block subsidy as consensus defines it: 50 BTC halved every 210,000 blocks, nothing
after 64 halvings. Imports only the standard library.
"""

from __future__ import annotations

COIN = 100_000_000  # satoshis per bitcoin
HALVING_INTERVAL = 210_000


def subsidy_sat(height: int) -> int:
    """The block subsidy at `height`, in satoshis."""
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * COIN) >> halvings
