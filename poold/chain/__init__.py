"""Chain primitives, the bottom package: hashes and merkle trees, targets and `nBits`,
serialization, payout addresses. Imports nothing else from poold.
"""
