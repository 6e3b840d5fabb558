"""Stratum V1: sans-I/O protocol, per-miner session policy, vardiff, and the asyncio transport."""
