"""Hashrate tokens: holders, transfers, BTC/USD prices and periodic statements. Calls
`accounting.token_settle` for the money and writes through the ledger's tables; no network."""
