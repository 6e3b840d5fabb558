"""bitcoind JSON-RPC over HTTP (aiohttp). aiohttp errors become `BitcoindError` at this boundary."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from poold.bitcoind.client import BitcoindError, BitcoindRefused, WalletTx
from poold.chain.block import serialize_tx
from poold.chain.subsidy import subsidy_sat
from poold.config import redact_url

SAT = Decimal(100_000_000)
LIST_PAGE = 200
#: What a signature adds to an unsigned input (a P2PKH scriptSig, the largest common one):
#: the fee of an anchor transaction is reckoned on its unsigned size plus this.
SIGNATURE_BYTES = 108
DUST_SAT = 1_000  # change below this is refused rather than given to the miners


def btc_text(sat: int) -> str:
    """Satoshis as the exact BTC decimal text bitcoind accepts for an amount."""
    if sat <= 0:
        raise ValueError(f"amount must be positive, got {sat} sat")
    return f"{sat // 100_000_000}.{sat % 100_000_000:08d}"


def sat_of(amount: object) -> int:
    """A BTC amount bitcoind sent (parsed as Decimal) as integer satoshis, exactly."""
    value = Decimal(str(amount)) * SAT
    if value != value.to_integral_value():
        raise BitcoindError(f"bitcoind sent an amount finer than a satoshi: {amount}")
    return int(value)


class RpcBitcoind:
    def __init__(self, url: str, user: str, password: str, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.shown_url = redact_url(url)  # for messages: no credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def call(self, method: str, *params: object, exact: bool = False) -> Any:
        """One RPC; `exact` parses numbers with a fraction as Decimal (wallet amounts)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = orjson.dumps(
            {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        try:
            async with self._session.post(self.url, data=body, headers=self._headers) as resp:
                raw = await resp.read()
                if resp.status == 401:
                    raise BitcoindError(
                        f"bitcoind at {self.shown_url} refused the RPC user/password (401)"
                    )
                try:
                    reply = json.loads(raw, parse_float=Decimal) if exact else orjson.loads(raw)
                except (orjson.JSONDecodeError, ValueError):
                    raise BitcoindError(
                        f"bitcoind at {self.shown_url} answered {method} with HTTP {resp.status}, "
                        "not JSON"
                    ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BitcoindError(
                f"bitcoind at {self.shown_url} unreachable for {method}: {exc!r}"
            ) from exc
        if not isinstance(reply, dict):
            raise BitcoindError(f"bitcoind at {self.shown_url} sent a malformed reply to {method}")
        err = reply.get("error")
        if err:
            msg = err.get("message") if isinstance(err, dict) else err
            raise BitcoindRefused(f"bitcoind refused {method}: {msg}")
        return reply.get("result")

    async def get_template(self) -> dict[str, object]:
        result = await self.call("getblocktemplate", {"rules": ["segwit"]})
        if not isinstance(result, dict):
            raise BitcoindError("getblocktemplate did not return an object")
        return result

    async def best_block_hash(self) -> str:
        result = await self.call("getbestblockhash")
        if not isinstance(result, str):
            raise BitcoindError("getbestblockhash did not return a string")
        return result

    async def block_confirmations(self, block_hash: str) -> int:
        """Confirmations of a block; -1 when it is not on the best chain (stale/orphaned).

        Membership is checked exactly (the best chain's hash at its height): nodes differ in
        what `confirmations` says for a side-chain block."""
        header = await self.call("getblockheader", block_hash)
        if not isinstance(header, dict) or not isinstance(header.get("confirmations"), int):
            raise BitcoindError("getblockheader did not return confirmations")
        confirmations = int(header["confirmations"])
        if confirmations < 0:
            return -1
        if await self.call("getblockhash", int(header["height"])) != block_hash:
            return -1
        return confirmations

    async def submit_block(self, block_hex: str) -> str | None:
        result = await self.call("submitblock", block_hex)
        return None if result is None else str(result)

    async def tip_height(self) -> int:
        height = await self.call("getblockcount")
        if not isinstance(height, int):
            raise BitcoindError("getblockcount did not return a height")
        return height

    async def block_fees(self, height: int) -> tuple[str, int]:
        block_hash = await self.call("getblockhash", height)
        block = await self.call("getblock", block_hash, 2, exact=True)
        try:
            coinbase = block["tx"][0]
            claimed = sum(sat_of(out["value"]) for out in coinbase["vout"])
        except (KeyError, IndexError, TypeError):
            raise BitcoindError(f"getblock {block_hash} has no readable coinbase") from None
        return str(block_hash), max(0, claimed - subsidy_sat(height))

    async def raw_block(self, block_hash: str) -> bytes:
        raw = await self.call("getblock", block_hash, 0)
        if not isinstance(raw, str):
            raise BitcoindError(f"getblock {block_hash} did not return the block's hex")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise BitcoindError(f"getblock {block_hash} returned no hex") from None

    async def _sign(self, tx_hex: str) -> str:
        """Sign with the wallet: signrawtransactionwithwallet (Bitcoin Core since 0.17), else
        signrawtransaction (older nodes and Bitcoin SV)."""
        try:
            signed = await self.call("signrawtransactionwithwallet", tx_hex)
        except BitcoindRefused as exc:
            if "not found" not in str(exc).lower():
                raise
            signed = await self.call("signrawtransaction", tx_hex)
        if not isinstance(signed, dict) or signed.get("complete") is not True:
            raise BitcoindError(f"the wallet could not sign the anchor transaction: {signed!r}")
        return str(signed["hex"])

    async def send_anchor(
        self, script: bytes, *, address: str, change_script: bytes, fee_rate_sat_vb: int
    ) -> str:
        coins = await self.call("listunspent", 1, 9_999_999, [address], exact=True)
        if not isinstance(coins, list):
            raise BitcoindError("listunspent did not return a list")
        spendable = [c for c in coins if c.get("spendable", True)]
        if not spendable:
            raise BitcoindError(
                f"the wallet holds no confirmed coin of {address}: fund it to send anchors"
            )
        coin = max(spendable, key=lambda c: sat_of(c["amount"]))
        value = sat_of(coin["amount"])
        prevout = (bytes.fromhex(str(coin["txid"]))[::-1], int(coin["vout"]))
        size = len(serialize_tx([prevout], [(0, script), (value, change_script)]))
        change = value - fee_rate_sat_vb * (size + SIGNATURE_BYTES)
        if change < DUST_SAT:
            raise BitcoindError(
                f"the largest coin of {address} ({value} sat) does not cover an anchor's fee"
            )
        unsigned = serialize_tx([prevout], [(0, script), (change, change_script)])
        txid = await self.call("sendrawtransaction", await self._sign(unsigned.hex()))
        if not isinstance(txid, str) or len(txid) != 64:
            raise BitcoindError(f"sendrawtransaction did not return a txid: {txid!r}")
        return txid

    async def tx_block(self, txid: str) -> str | None:
        tx = await self.call("gettransaction", txid, exact=True)
        if not isinstance(tx, dict):
            raise BitcoindError(f"gettransaction {txid} did not return an object")
        if int(tx.get("confirmations", 0)) < 1 or not tx.get("blockhash"):
            return None
        return str(tx["blockhash"])

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        amounts = {address: btc_text(sat) for address, sat in outputs.items()}
        txid = await self.call("sendmany", "", amounts, 1, comment)
        if not isinstance(txid, str) or len(txid) != 64:
            raise BitcoindError(f"sendmany did not return a txid: {txid!r}")
        return txid

    async def find_sent(self, comment: str, since_s: int) -> str | None:
        skip = 0
        while True:
            page = await self.call("listtransactions", "*", LIST_PAGE, skip, exact=True)
            if not isinstance(page, list):
                raise BitcoindError("listtransactions did not return a list")
            for tx in page:
                if tx.get("category") == "send" and tx.get("comment") == comment:
                    return str(tx["txid"])
            # Pages run newest last; stop once a whole page is older than the intent.
            if len(page) < LIST_PAGE or all(int(tx.get("time", 0)) < since_s for tx in page):
                return None
            skip += LIST_PAGE

    async def wallet_tx(self, txid: str) -> WalletTx:
        tx = await self.call("gettransaction", txid, exact=True)
        if not isinstance(tx, dict) or "confirmations" not in tx:
            raise BitcoindError(f"gettransaction {txid} returned no confirmations")
        return WalletTx(txid, int(tx["confirmations"]), -sat_of(tx.get("fee", 0)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
