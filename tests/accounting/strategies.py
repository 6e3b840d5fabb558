"""Hypothesis strategies for accounting tests."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import strategies as st

ACCOUNTS = ["alice", "bob", "carol", "dave", "erin", "frank", "a", "b", "bc1qzz"]

diffs = st.one_of(
    st.integers(1, 2**20).map(Fraction),
    st.integers(0, 32).map(lambda k: Fraction(1, 2**k)),
    st.fractions(min_value=Fraction(1, 1000), max_value=1000, max_denominator=1000),
)
net_diffs = st.sampled_from(
    [
        Fraction(1),
        Fraction(3),
        Fraction(16),
        Fraction(1000),
        Fraction("86388558925171.02"),
        Fraction(7, 2),
    ]
)


@st.composite
def share_lists(
    draw, max_size: int = 60, over_network: bool = False
) -> list[tuple[str, Fraction, Fraction]]:
    """Shares oldest first; with `over_network`, share difficulties may pass the network's
    (every share on regtest, a testnet's minimum-difficulty blocks): FPPS must cap them."""
    n = draw(st.integers(0, max_size))
    out = []
    net = draw(net_diffs)
    for _ in range(n):
        if draw(st.integers(0, 9)) == 0:
            net = draw(net_diffs)  # a difficulty change inside the window
        sd = draw(diffs)
        if over_network and draw(st.integers(0, 3)) == 0:
            sd = net * draw(st.sampled_from([1, 2, 5000, Fraction(3, 2)]))
        elif sd > net * 3 and not over_network:
            sd = net / 3
        out.append((draw(st.sampled_from(ACCOUNTS)), sd, net))
    return out


fees = st.fractions(min_value=0, max_value=Fraction(1, 5), max_denominator=1000)
factors = st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 2), Fraction(5, 3)])
rewards = st.integers(0, 21 * 10**14)
