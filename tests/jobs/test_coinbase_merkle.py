from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poold.chain.merkle import coinbase_branch, fold_branch, merkle_root, sha256d
from poold.chain.serialize import script_num, varint
from poold.jobs.coinbase import bip34_height, build_coinbase, push_data, read_commitments


@pytest.mark.parametrize(
    ("height", "expected"),
    [
        (0, "00"),
        (1, "51"),
        (16, "60"),
        (17, "0111"),
        (127, "017f"),
        (128, "028000"),  # sign bit forces an extra byte
        (255, "02ff00"),
        (256, "020001"),
        (32767, "02ff7f"),
        (32768, "03008000"),
        (840000, "0340d10c"),  # mainnet halving block: 03 40d10c
        (8388608, "0400008000"),
    ],
)
def test_bip34_height_push(height: int, expected: str) -> None:
    assert bip34_height(height).hex() == expected


def test_script_num_negative_and_varint() -> None:
    assert script_num(-1) == b"\x81"
    assert script_num(-128) == b"\x80\x80"
    assert varint(0xFC) == b"\xfc" and varint(0xFD) == b"\xfd\xfd\x00"
    assert varint(0x10000) == b"\xfe\x00\x00\x01\x00"
    assert varint(2**32) == b"\xff" + (2**32).to_bytes(8, "little")
    assert push_data(bytes(80))[:2] == b"\x4c\x50"


def test_scriptsig_over_100_bytes_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="coinbase_tag"):
        build_coinbase(
            height=1000, value_sat=1, payout_script=b"\x51", tag=b"x" * 90, extranonce_size=8
        )


@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=40),
    st.binary(min_size=32, max_size=32),
)
def test_branch_folds_to_merkle_root(others: list[bytes], coinbase_hash: bytes) -> None:
    branch = coinbase_branch(others)
    assert fold_branch(coinbase_hash, branch) == merkle_root([coinbase_hash, *others])


def test_merkle_of_one_is_itself_and_empty_is_error() -> None:
    h = sha256d(b"x")
    assert merkle_root([h]) == h and coinbase_branch([]) == []
    with pytest.raises(ValueError):
        merkle_root([])


def test_the_statement_commitment_is_a_zero_value_op_return_before_the_witness_commitment() -> None:
    commitment = bytes(range(32))
    witness = bytes.fromhex("6a24aa21a9ed") + bytes(32)
    parts = build_coinbase(
        height=1000,
        value_sat=5_000_000_000,
        payout_script=b"\x51",
        tag=b"/t/",
        extranonce_size=8,
        witness_commitment=witness,
        statement_commitment=commitment,
    )
    marked = b"\x00" * 8 + b"\x26" + b"\x6a\x24" + b"pold" + commitment
    tail = parts.coinb2
    assert tail[4] == 3  # payout, statement commitment, witness commitment
    assert marked in tail and tail.index(marked) < tail.index(witness)
    with pytest.raises(ValueError, match="32 bytes"):
        build_coinbase(
            height=1000, value_sat=1, payout_script=b"\x51", tag=b"", extranonce_size=8,
            statement_commitment=b"short",
        )  # fmt: skip


def test_the_credit_commitment_follows_the_statement_commitment_in_one_op_return() -> None:
    statement, credit = bytes(range(32)), bytes(range(100, 132))
    for s, c, pushed in (
        (statement, None, statement),
        (statement, credit, statement + credit),
        (None, credit, bytes(32) + credit),  # no statement yet: 32 zero bytes hold its place
    ):
        parts = build_coinbase(
            height=1000, value_sat=5_000_000_000, payout_script=b"\x51", tag=b"/t/",
            extranonce_size=8, statement_commitment=s, credit_commitment=c,
        )  # fmt: skip
        script = b"\x6a" + bytes([4 + len(pushed)]) + b"pold" + pushed
        assert b"\x00" * 8 + bytes([len(script)]) + script in parts.coinb2
        assert read_commitments(script) == (s, c)
    assert read_commitments(b"\x6a\x24" + b"palo" + statement) is None
    assert read_commitments(b"\x51") is None
    with pytest.raises(ValueError, match="credit commitment is 32 bytes"):
        build_coinbase(
            height=1000, value_sat=1, payout_script=b"\x51", tag=b"", extranonce_size=8,
            credit_commitment=b"short",
        )  # fmt: skip
