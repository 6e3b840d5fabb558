"""Pure accounting for poold: exact PPLNS, PROP, SOLO, FPPS, hashrate, token settlement and
earnings against hashprice.

Money is an `int` of satoshis; other numbers are parsed exactly (int, str, Decimal, Fraction;
floats only where a docstring says so). The O(shares) loops run as Numba kernels
(`accounting.kernels`); every public function is checked against `accounting.reference`.
Imports only numpy, numba and the standard library, never `poold`.
"""

from accounting.benchmark import (
    StatementBenchmark,
    mean_hashprice,
    statement_benchmark,
    value_at_hashprice,
)
from accounting.fpps import (
    FppsResult,
    avg_fees,
    credited_difficulty,
    fpps_credit_arrays,
    fpps_settle,
    fpps_settle_arrays,
    fpps_settle_sums,
    fpps_share_value,
)
from accounting.hashrate import hashprice, hashrate, hashrate_windows
from accounting.money import largest_remainder
from accounting.pplns import AccountNames, PplnsResult, pplns_split, pplns_split_arrays
from accounting.prop import prop_split, solo_split
from accounting.tokens import StatementLine, TokenSettlement, token_settle

__all__ = [
    "AccountNames",
    "FppsResult",
    "PplnsResult",
    "StatementBenchmark",
    "StatementLine",
    "TokenSettlement",
    "avg_fees",
    "credited_difficulty",
    "fpps_credit_arrays",
    "fpps_settle",
    "fpps_settle_arrays",
    "fpps_settle_sums",
    "fpps_share_value",
    "hashprice",
    "hashrate",
    "hashrate_windows",
    "largest_remainder",
    "mean_hashprice",
    "pplns_split",
    "pplns_split_arrays",
    "prop_split",
    "solo_split",
    "statement_benchmark",
    "token_settle",
    "value_at_hashprice",
]
