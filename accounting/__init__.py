"""Pure accounting computation for poold (PPLNS, FPPS, hashrate, token settlement).

Imports only numpy/numba/stdlib and never imports `poold`. The kernels arrive with the
accounting-core work; this package marks the boundary the daemon must respect.
"""
