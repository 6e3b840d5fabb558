"""Block sources: a bitcoind JSON-RPC client and `simnet`, a built-in private chain."""
