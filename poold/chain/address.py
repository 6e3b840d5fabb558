"""Payout addresses -> output scripts, validated per network.

Owns: base58check (P2PKH, P2SH) and bech32/bech32m (P2WPKH, P2WSH, P2TR) decoding through the
`base58` and `bech32m` libraries. A mistyped address raises `ValueError` naming what is wrong.
"""

from __future__ import annotations

import enum

import base58
import bech32m


class Network(enum.StrEnum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    SIGNET = "signet"
    REGTEST = "regtest"


_HRP = {
    Network.MAINNET: "bc",
    Network.TESTNET: "tb",
    Network.SIGNET: "tb",
    Network.REGTEST: "bcrt",
}
_P2PKH = {Network.MAINNET: 0x00}
_P2SH = {Network.MAINNET: 0x05}
for _net in (Network.TESTNET, Network.SIGNET, Network.REGTEST):
    _P2PKH[_net] = 0x6F
    _P2SH[_net] = 0xC4


def address_to_script(address: str, network: Network) -> bytes:
    """Output script (scriptPubKey) paying `address` on `network`."""
    address = address.strip()
    if not address:
        raise ValueError("payout address is empty")
    hrp = _HRP[network]
    if address.lower().startswith(hrp + "1"):
        return _segwit_script(address, hrp, network)
    try:
        raw = base58.b58decode_check(address)
    except ValueError:
        raise ValueError(
            f"payout address {address!r} is neither valid bech32 for {network} "
            f"(prefix {hrp}1) nor valid base58check (bad checksum or characters)"
        ) from None
    if len(raw) != 21:
        raise ValueError(f"payout address {address!r}: base58 payload is {len(raw)} bytes, not 21")
    version, h160 = raw[0], raw[1:]
    if version == _P2PKH[network]:
        return b"\x76\xa9\x14" + h160 + b"\x88\xac"
    if version == _P2SH[network]:
        return b"\xa9\x14" + h160 + b"\x87"
    raise ValueError(
        f"payout address {address!r} has version byte 0x{version:02x}, "
        f"which is not a P2PKH/P2SH address for {network}"
    )


def _segwit_script(address: str, hrp: str, network: Network) -> bytes:
    try:
        decoded = bech32m.decode(hrp, address)
    except Exception as exc:  # the library raises its own DecodeError subclasses
        raise ValueError(
            f"payout address {address!r} is not a valid bech32/bech32m address for {network}"
        ) from exc
    witver, prog = decoded.witver, bytes(decoded.witprog)
    if witver is None or prog is None:
        raise ValueError(f"payout address {address!r} is not a valid segwit address for {network}")
    if witver == 0 and len(prog) not in (20, 32):
        raise ValueError(f"payout address {address!r}: v0 program must be 20 or 32 bytes")
    if witver == 1 and len(prog) != 32:
        raise ValueError(f"payout address {address!r}: taproot program must be 32 bytes")
    op = 0 if witver == 0 else 0x50 + witver
    return bytes([op, len(prog)]) + prog
