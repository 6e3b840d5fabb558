"""The HTTP side of poold (aiohttp): /api/v1 JSON, /healthz, /readyz, /metrics, the OpenAPI
document. Reads through poold.ledger.queries; writes only through poold.tokens; no Stratum."""
