"""Blocks as bytes (`poold.chain.block`) on a real mainnet block, and `verify.py`'s own reading
of the same bytes: the coinbase's txid is that of its non-witness serialisation, its BIP34
height reads back, a merkle branch of any transaction folds to the header's merkle root, and
the default --min-work puts a mainnet header above the floor and the genesis header below."""

from __future__ import annotations

import pytest

from poold.chain.block import BlockFormatError, fold, merkle_branch, parse_tx
from tests.helpers import load_vector
from tests.verifier import verifier


@pytest.fixture
def block() -> dict[str, object]:
    return load_vector("mainnet_951658.json")


def test_a_segwit_coinbase_is_read_without_its_witness(block: dict) -> None:
    tx = parse_tx(bytes.fromhex(block["coinbase_hex"]))
    assert tx.txid[::-1].hex() == block["txids"][0]
    assert tx.is_coinbase and tx.height == block["height"]
    assert parse_tx(tx.plain).txid == tx.txid  # the plain bytes alone, as a proof carries them
    # verify.py takes only the non-witness serialisation, the one a merkle root commits to.
    with pytest.raises(ValueError, match="witness data"):
        verifier.parse_tx(bytes.fromhex(block["coinbase_hex"]))
    assert verifier.parse_tx(tx.plain).txid == tx.txid


@pytest.mark.parametrize("index", [0, 1, 200, 373])
def test_every_branch_folds_to_the_headers_merkle_root(block: dict, index: int) -> None:
    txids = [bytes.fromhex(t)[::-1] for t in block["txids"]]
    root = bytes.fromhex(block["header"])[36:68]
    branch = merkle_branch(txids, index)
    assert fold(txids[index], index, branch) == root
    assert verifier.fold(txids[index], index, tuple(branch)) == root
    assert fold(txids[index], index ^ 1, branch) != root  # the position matters


def test_the_work_floor_sits_between_test_chains_and_mainnet(block: dict) -> None:
    header = bytes.fromhex(block["header"])
    target = verifier.target_of(int.from_bytes(header[72:76], "little"))
    assert int.from_bytes(verifier.sha256d(header), "little") <= target
    assert verifier.sha256d(header)[::-1].hex() == block["hash"]
    assert 2**256 // (target + 1) >= verifier.DEFAULT_MIN_WORK  # 2026: about 2^79
    genesis = int(load_vector("mainnet_genesis.json")["bits"], 16)  # difficulty 1: 2^32 hashes
    assert 2**256 // (verifier.target_of(genesis) + 1) < verifier.DEFAULT_MIN_WORK
    regtest = 0x207FFFFF
    assert 2**256 // (verifier.target_of(regtest) + 1) == 2


def test_truncated_or_padded_transactions_are_refused(block: dict) -> None:
    plain = parse_tx(bytes.fromhex(block["coinbase_hex"])).plain
    with pytest.raises(BlockFormatError, match="truncated"):
        parse_tx(plain[:-1])
    with pytest.raises(BlockFormatError, match="after the transaction"):
        parse_tx(plain + b"\x00")
    with pytest.raises(ValueError, match="1 bytes follow it"):
        verifier.parse_tx(plain + b"\x00")
