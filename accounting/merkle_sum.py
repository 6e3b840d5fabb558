"""Merkle-sum trees over statement lines (holders' token statements, `STATEMENT`; miners'
lines of a block's split or an FPPS booking, `CREDIT`), and the hash chain of their roots.

A leaf commits to one line: H(0x00 || salted id || the line's fields), with the line's
summed amounts beside it. Every parent commits to both children's hashes *and* sums:
H(0x01 || left hash || left sums || right hash || right sums), its sums being theirs added
(hashing only a total would let an operator shrink one side unseen). Every summed amount is
a non-negative integer, so no line can cancel another. An odd node at a level is paired with
nothing and carried up as it is. A period's commitment binds the tree's root and sums to a
digest of the period's inputs and to the previous commitment: H(0x02 || root || sums ||
inputs digest || previous), which makes the commitments a chain. SHA-256 throughout; every
integer is 16 bytes big-endian, every string length-prefixed.

`verify.py` at the top of the repository re-implements the checks with the standard library
only (a holder runs it without trusting this code); the tests hold the two to each other.
Imports the standard library and NumPy (a period's 100,000 leaves are packed in arrays).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEAF, NODE, PERIOD = b"\x00", b"\x01", b"\x02"
#: The fields of a statement line a leaf commits to, in order; the summed ones are SUMMED.
LINE_FIELDS = (
    "atom_seconds",
    "gross_sat",
    "electricity_sat",
    "service_sat",
    "net_sat",
    "debt_in_sat",
    "paid_sat",
    "debt_out_sat",
    "written_off_sat",
)
SUMMED = (
    "atom_seconds",
    "gross_sat",
    "electricity_sat",
    "service_sat",
    "debt_in_sat",
    "paid_sat",
    "debt_out_sat",
    "written_off_sat",
)
GENESIS = bytes(32)  # the "previous commitment" of the first period
#: The proof document's version (2: anchors carry their evidence; the proof names its cut).
PROOF_VERSION = 2


@dataclass(frozen=True, slots=True)
class Layout:
    """What a leaf commits to: `fields` in order (those in `text` as length-prefixed strings,
    the others as integers), and which integer fields are summed up the tree."""

    fields: tuple[str, ...]
    summed: tuple[str, ...]
    text: tuple[str, ...] = ()


#: A holder's token statement line.
STATEMENT = Layout(LINE_FIELDS, SUMMED)
#: A miner's line of one settlement (a block's split or an FPPS booking): the satoshis
#: credited, the account's score (its work in network difficulties that counted, exact), and
#: the sub-satoshi remainder carried in and out (FPPS; "0" for blocks).
CREDIT = Layout(
    ("credit_sat", "score", "carry_in", "carry_out"),
    ("credit_sat",),
    ("score", "carry_in", "carry_out"),
)
#: A miner's line of an FPPS booking: as `CREDIT`, plus the number of shares it counts (each
#: credited at most one block, so the score can never exceed it).
FPPS_CREDIT = Layout(
    ("credit_sat", "score", "carry_in", "carry_out", "shares"),
    ("credit_sat",),
    ("score", "carry_in", "carry_out"),
)


def credit_layout(lines: Mapping[str, Mapping[str, object]]) -> Layout:
    """The layout of a settlement's stored miner lines (FPPS bookings since the share cap
    carry share counts; earlier ones and block splits do not)."""
    return FPPS_CREDIT if any("shares" in line for line in lines.values()) else CREDIT


def _int(v: int) -> bytes:
    return v.to_bytes(16, "big", signed=True)


def _str(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(4, "big") + raw


def _sums(sums: Sequence[int]) -> bytes:
    return b"".join(_int(v) for v in sums)


def salted_id(salt: bytes, holder: str) -> bytes:
    """What a leaf shows of its holder: H(salt || name). The salt is the holder's secret."""
    return hashlib.sha256(salt + _str(holder)).digest()


@dataclass(frozen=True, slots=True)
class Node:
    hash: bytes
    sums: tuple[int, ...]


def leaf(salted: bytes, line: Mapping[str, object], layout: Layout = STATEMENT) -> Node:
    body = b"".join(
        _str(str(line[f])) if f in layout.text else _int(int(line[f]))  # type: ignore[call-overload]
        for f in layout.fields
    )
    sums = tuple(int(line[f]) for f in layout.summed)  # type: ignore[call-overload]
    if any(v < 0 for v in sums):
        raise ValueError(
            f"a summed amount of a line is negative: {dict(zip(layout.summed, sums, strict=True))}"
        )
    return Node(hashlib.sha256(LEAF + salted + body).digest(), sums)


def parent(left: Node, right: Node) -> Node:
    h = hashlib.sha256(NODE + left.hash + _sums(left.sums) + right.hash + _sums(right.sums))
    return Node(h.digest(), tuple(a + b for a, b in zip(left.sums, right.sums, strict=True)))


def build(leaves: Sequence[Node], width: int = len(SUMMED)) -> list[list[Node]]:
    """Every level, leaves first, root last (an empty tree is one zero leaf of `width` sums)."""
    level = list(leaves) or [Node(bytes(32), tuple(0 for _ in range(width)))]
    levels = [level]
    while len(level) > 1:
        nxt = [parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # carried up unpaired
        levels.append(nxt)
        level = nxt
    return levels


def proof(levels: list[list[Node]], index: int) -> list[dict[str, object]]:
    """The siblings from leaf `index` to the root: side ("L": the sibling is on the left),
    hash, sums; an unpaired step is left out."""
    out: list[dict[str, object]] = []
    for level in levels[:-1]:
        sib = index ^ 1
        if sib < len(level):
            s = level[sib]
            out.append(
                {"side": "L" if sib < index else "R", "hash": s.hash.hex(), "sums": list(s.sums)}
            )
        index //= 2
    return out


def climb(node: Node, steps: Sequence[Mapping[str, object]]) -> Node:
    for step in steps:
        sib = Node(bytes.fromhex(str(step["hash"])), tuple(int(v) for v in step["sums"]))  # type: ignore[attr-defined]
        node = parent(sib, node) if step["side"] == "L" else parent(node, sib)
    return node


def inputs_digest(inputs: Mapping[str, object]) -> bytes:
    """The period's published inputs as canonical JSON (sorted keys, no spaces), hashed."""
    return hashlib.sha256(
        json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    ).digest()


def commitment(root: Node, digest: bytes, previous: bytes) -> bytes:
    return hashlib.sha256(PERIOD + root.hash + _sums(root.sums) + digest + previous).digest()


@dataclass(frozen=True)
class PeriodTree:
    """A period's statement lines as a Merkle-sum tree: leaves ordered by salted id (so the
    order tells nothing about names), `index` maps each holder to its leaf."""

    levels: list[list[Node]]
    index: dict[str, int]

    @property
    def root(self) -> Node:
        return self.levels[-1][0]


def period_tree(
    lines: Mapping[str, Mapping[str, object]],
    salts: Mapping[str, bytes],
    layout: Layout = STATEMENT,
) -> PeriodTree:
    keyed = sorted((salted_id(salts[h], h), h) for h in lines)
    index = {h: i for i, (_s, h) in enumerate(keyed)}
    leaves = [leaf(s, lines[h], layout) for s, h in keyed]
    return PeriodTree(build(leaves, len(layout.summed)), index)


def period_root(
    lines: Mapping[str, Mapping[str, object]],
    salts: Mapping[str, bytes],
    layout: Layout = STATEMENT,
) -> Node:
    """The root `period_tree` would have, without keeping its levels: what a settlement
    commits to (integer-only lines are hashed from NumPy arrays, 100,000 a period)."""
    keyed = sorted((salted_id(salts[h], h), h) for h in lines)
    if not layout.text:
        fields = layout.fields
        rows = [[int(lines[h][f]) for f in fields] for _s, h in keyed]  # type: ignore[call-overload]
        return root_of_rows([s for s, _h in keyed], rows)
    return build([leaf(s, lines[h], layout) for s, h in keyed], len(layout.summed))[-1][0]


def root_of_rows(
    salted: list[bytes], rows: Sequence[Sequence[int]], layout: Layout = STATEMENT
) -> Node:
    """The root over integer-only lines given as rows of `layout.fields`, in salted-id
    order (`period_root` without the dicts: a settlement passes its lines' attributes)."""
    summed = [layout.fields.index(f) for f in layout.summed]
    if len(rows) > 1:
        fast = _root_in_arrays(salted, rows, summed)
        if fast is not None:
            return fast
    lines = [dict(zip(layout.fields, r, strict=True)) for r in rows]
    return build(
        [leaf(s, line, layout) for s, line in zip(salted, lines, strict=True)], len(summed)
    )[-1][0]


_SAFE = 1 << 62


def _packed(m: np.ndarray) -> bytes:
    """Each row's values as `_int` encodes them, rows one after another."""
    out = np.empty((m.shape[0], m.shape[1], 2), dtype=">i8")
    out[:, :, 0] = np.where(m < 0, -1, 0)
    out[:, :, 1] = m
    return out.tobytes()


def _root_in_arrays(
    salted: list[bytes], rows: Sequence[Sequence[int]], summed: list[int]
) -> Node | None:
    """`build`'s root over integer-only lines with the packing and the sums in NumPy (the
    same bytes; 100,000 holders a period); None when a value or a total might not fit in 62
    bits (then the plain path builds it, or refuses a negative sum)."""
    try:
        vals = np.array(rows, dtype=np.int64)
    except OverflowError:
        return None
    if vals.size == 0 or int(np.abs(vals).max()) >= _SAFE:
        return None
    sums = vals[:, summed]
    if (sums < 0).any() or int(sums.max(initial=0)) * len(rows) >= _SAFE:
        return None
    sha = hashlib.sha256
    width = vals.shape[1] * 16
    blob = _packed(vals)
    hashes = [
        sha(LEAF + s + blob[i * width : (i + 1) * width]).digest() for i, s in enumerate(salted)
    ]
    width = sums.shape[1] * 16
    while len(hashes) > 1:
        pairs = len(hashes) // 2
        blob = _packed(sums)
        nxt = [
            sha(
                NODE
                + hashes[2 * i]
                + blob[2 * i * width : (2 * i + 1) * width]
                + hashes[2 * i + 1]
                + blob[(2 * i + 1) * width : (2 * i + 2) * width]
            ).digest()
            for i in range(pairs)
        ]
        upper = sums[0 : 2 * pairs : 2] + sums[1 : 2 * pairs : 2]
        if len(hashes) % 2:  # the unpaired node is carried up as it is
            nxt.append(hashes[-1])
            upper = np.vstack([upper, sums[-1:]])
        hashes, sums = nxt, upper
    return Node(hashes[0], tuple(sums[0].tolist()))


def line_fields(line: object) -> dict[str, int]:
    """A statement line (any object with the LINE_FIELDS attributes) as a dict."""
    return {f: int(getattr(line, f)) for f in LINE_FIELDS}


def node_json(node: Node) -> dict[str, object]:
    return {"hash": node.hash.hex(), "sums": list(node.sums)}


def proof_document(
    tree: PeriodTree,
    holder: str,
    salt: bytes,
    line: Mapping[str, object],
    inputs: Mapping[str, object],
    previous: bytes,
    chain: Sequence[Mapping[str, object]] = (),
    layout: Layout = STATEMENT,
) -> dict[str, object]:
    """What `verify.py` checks for one holder's (or, with `CREDIT`, one miner's) line of one
    period (see its docstring): the line, its path and the chain after it. The ledger adds
    the anchors' evidence and where the proof was cut (`docs/reference/proof-format.md`)."""
    root = tree.root
    return {
        "version": PROOF_VERSION,
        **(
            {"kind": "statement", "holder": holder}
            if layout is STATEMENT
            else {"kind": "credit", "account": holder}
        ),
        "salt": salt.hex(),
        "line": {f: str(line[f]) if f in layout.text else int(line[f]) for f in layout.fields},  # type: ignore[call-overload]
        "path": proof(tree.levels, tree.index[holder]),
        "period": {
            "inputs": dict(inputs),
            "root": node_json(root),
            "previous": previous.hex(),
            "commitment": commitment(root, inputs_digest(inputs), previous).hex(),
        },
        "chain": list(chain),
    }
