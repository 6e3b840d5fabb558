"""poold: a mining-pool share accounting daemon.

Everything that does I/O lives under this package; pure money math lives in `accounting`.
"""

__version__ = "0.1.0"
