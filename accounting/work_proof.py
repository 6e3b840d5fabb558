"""Proof of delivered work: a Merkle-sum tree over a period's accepted shares, sampled by a
beacon the pool cannot choose.

A leaf is one share: its header hash `h` (32 bytes, big-endian: byte order is numeric
order), its **weight** (the share's expected hashes, `difficulty x 2**32`, an integer for
every difficulty poold credits: whole numbers, or 1/2**k with k <= 32) and a salted account
tag. Leaves are strictly sorted by `h`. Every node is (hash, work, lo, hi): the summed weight
beneath it and the smallest and largest header hash beneath it; a parent commits to both
children's four fields, H(0x11 || left || right), a leaf to its own, H(0x10 || h || weight ||
tag) with lo = hi = h. An odd node at a level is carried up as it is. A verifier that climbs a
sampled leaf's path checks `left.hi < right.lo` at every node: the leaves are then strictly
sorted, so a share counted twice fails exactly like a forged one.

Draw i (0 <= i < k) is `H(beacon || root || i) mod total_work`, the leaf whose cumulative
weight range holds it (a walk down the sum tree; with replacement). If a fraction `f` of the
committed work is not real, k draws all miss it with probability (1 - f)**k; k valid draws
establish, with confidence 1 - alpha, that at least alpha**(1/k) of the work is real.

SHA-256 throughout; the work is 16 bytes big-endian, a node packs into 112 bytes (`pack`).
`verify.py` re-implements the checks with the standard library only. Imports nothing of
poold and does no I/O (standard library only).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate, pairwise

LEAF, NODE, DRAW, TAG = b"\x10", b"\x11", b"\x12", b"\x13"
#: The difficulty-1 target (Bitcoin's); a share of weight w meets DIFF1 x 2**32 // w.
DIFF1_TARGET = 0xFFFF * 2**208
HASHES_PER_DIFF1 = 2**32
NODE_BYTES = 112
#: An operator who inflates delivery by 5 % fakes 1/21 (4.76 %) of the committed work; with
#: this many draws it escapes with probability below 1 % (`escape_probability`).
DEFAULT_K = 100
DEFAULT_ALPHA = Fraction(1, 100)


@dataclass(frozen=True, slots=True)
class WorkNode:
    hash: bytes
    work: int
    lo: bytes
    hi: bytes

    def pack(self) -> bytes:
        return self.hash + self.work.to_bytes(16, "big") + self.lo + self.hi

    @classmethod
    def unpack(cls, data: bytes) -> WorkNode:
        if len(data) != NODE_BYTES:
            raise ValueError(f"a packed node is {NODE_BYTES} bytes, got {len(data)}")
        return cls(data[:32], int.from_bytes(data[32:48], "big"), data[48:80], data[80:112])


@dataclass(frozen=True, slots=True)
class Leaf:
    """One share as the tree holds it: header hash (big-endian), weight, account tag."""

    hash: bytes
    weight: int
    tag: bytes


def weight_of(diff_num: int, diff_den: int) -> int:
    """A share's weight from its own difficulty (before any crediting cap): diff x 2**32,
    which must be a whole number (it is for every difficulty poold credits)."""
    if diff_num <= 0 or diff_den <= 0:
        raise ValueError(f"difficulty {diff_num}/{diff_den} is not positive")
    w, rest = divmod(diff_num * HASHES_PER_DIFF1, diff_den)
    if rest:
        raise ValueError(f"difficulty {diff_num}/{diff_den} x 2**32 is not a whole number")
    return w


def target_of_weight(weight: int) -> int:
    """The target a share of `weight` had to meet: floor(DIFF1 x 2**32 / weight)."""
    if weight <= 0:
        raise ValueError(f"a weight must be positive, got {weight}")
    return min(DIFF1_TARGET * HASHES_PER_DIFF1 // weight, 2**256 - 1)


def meets_weight(hash_be: bytes, weight: int) -> bool:
    """Does a header hash (big-endian) meet the target of `weight`?"""
    return int.from_bytes(hash_be, "big") <= target_of_weight(weight)


def account_tag(salt: bytes, account: str) -> bytes:
    """What a leaf shows of its account: H(0x13 || salt || name). The pool publishes the tags of
    the fleet's accounts (not the names); the salt stays the pool's."""
    name = account.encode()
    return hashlib.sha256(TAG + salt + len(name).to_bytes(4, "big") + name).digest()


def leaf_node(leaf: Leaf) -> WorkNode:
    if len(leaf.hash) != 32 or len(leaf.tag) != 32:
        raise ValueError("a leaf's hash and tag are 32 bytes each")
    if leaf.weight <= 0 or leaf.weight >= 1 << 128:
        raise ValueError(f"a leaf's weight must be in 1..2**128-1, got {leaf.weight}")
    h = hashlib.sha256(LEAF + leaf.hash + leaf.weight.to_bytes(16, "big") + leaf.tag).digest()
    return WorkNode(h, leaf.weight, leaf.hash, leaf.hash)


def parent(left: WorkNode, right: WorkNode) -> WorkNode:
    h = hashlib.sha256(NODE + left.pack() + right.pack()).digest()
    return WorkNode(h, left.work + right.work, left.lo, right.hi)


EMPTY = WorkNode(bytes(32), 0, bytes(32), bytes(32))


def sort_leaves(leaves: Sequence[Leaf]) -> list[Leaf]:
    """Leaves in tree order (by header hash); ValueError naming a hash seen twice."""
    out = sorted(leaves, key=lambda lf: lf.hash)
    for a, b in pairwise(out):
        if a.hash == b.hash:
            raise ValueError(f"share {a.hash.hex()} is in the period twice")
    return out


def build(leaves: Sequence[Leaf], *, checked: bool = True) -> list[list[WorkNode]]:
    """Every level, leaves first, root last, over leaves already in tree order (`sort_leaves`;
    `checked` refuses any that are not). An empty period is the one node `EMPTY`."""
    if checked:
        for a, b in pairwise(leaves):
            if not a.hash < b.hash:
                raise ValueError(f"leaves out of order or repeated at {b.hash.hex()}")
    level = [leaf_node(lf) for lf in leaves] or [EMPTY]
    levels = [level]
    while len(level) > 1:
        nxt = [parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def build_unchecked(leaves: Sequence[Leaf]) -> list[list[WorkNode]]:
    """`build` without the order check: what a dishonest pool could commit (tests only)."""
    return build(leaves, checked=False)


def level_widths(n: int) -> list[int]:
    """How many nodes each level of a tree over `n` leaves has, leaves first."""
    widths = [max(n, 1)]
    while widths[-1] > 1:
        widths.append((widths[-1] + 1) // 2)
    return widths


def path_positions(index: int, n: int) -> list[tuple[int, int, bool]]:
    """(level, sibling index, sibling is on the left) from leaf `index` to the root, an
    unpaired step left out."""
    out = []
    for level, width in enumerate(level_widths(n)[:-1]):
        sib = index ^ 1
        if sib < width:
            out.append((level, sib, sib < index))
        index //= 2
    return out


def draw(beacon: bytes, root: bytes, i: int, total: int) -> int:
    """Draw `i`: H(0x12 || beacon || root || i) as a 256-bit number, mod the total work."""
    if total <= 0:
        raise ValueError("a period with no work has nothing to draw")
    d = hashlib.sha256(DRAW + beacon + root + i.to_bytes(8, "big")).digest()
    return int.from_bytes(d, "big") % total


def draws(beacon: bytes, root: WorkNode, k: int) -> list[int]:
    return [draw(beacon, root.hash, i, root.work) for i in range(k)]


def locate(levels: list[list[WorkNode]], r: int) -> int:
    """The leaf whose cumulative weight range [before, before + weight) holds `r`: the walk
    down the sum tree (left child when r falls in its work, else right with r reduced)."""
    index = 0
    for depth in range(len(levels) - 1, 0, -1):
        below = levels[depth - 1]
        left = 2 * index
        if left + 1 >= len(below):  # carried up unpaired
            index = left
            continue
        if r < below[left].work:
            index = left
        else:
            r -= below[left].work
            index = left + 1
    return index


def locate_prefix(prefix: Sequence[int], r: int) -> int:
    """`locate` over the leaves' running sums (`itertools.accumulate` of the weights)."""
    return bisect.bisect_right(prefix, r)


def prefix_sums(leaves: Sequence[Leaf]) -> list[int]:
    return list(accumulate(lf.weight for lf in leaves))


def siblings(levels: list[list[WorkNode]], index: int) -> dict[tuple[int, int], WorkNode]:
    n = len(levels[0])
    return {(lv, s): levels[lv][s] for lv, s, _left in path_positions(index, n)}


class PathError(ValueError):
    """A sampled path that does not climb to the root, breaks the order, or misses its draw."""


def climb(
    leaf: Leaf,
    index: int,
    n: int,
    sibling: Mapping[tuple[int, int], WorkNode],
    root: WorkNode,
    r: int | None = None,
) -> None:
    """Climb from leaf `index` of `n` to the root with the given siblings, checking
    `left.hi < right.lo` at every node and, with a draw `r`, that the leaf's cumulative range
    holds it. Raises PathError saying what failed."""
    node = leaf_node(leaf)
    before = 0
    for level, sib_index, on_left in path_positions(index, n):
        sib = sibling.get((level, sib_index))
        if sib is None:
            raise PathError(f"the path has no sibling at level {level} (node {sib_index})")
        left, right = (sib, node) if on_left else (node, sib)
        if not left.hi < right.lo:
            raise PathError(f"order broken at level {level + 1}: left max is not below right min")
        if sib.lo > sib.hi:
            raise PathError(f"sibling at level {level} has min above max")
        if on_left:
            before += sib.work
        node = parent(left, right)
    if node != root:
        raise PathError("the path does not climb to the committed root")
    if r is not None and not before <= r < before + leaf.weight:
        raise PathError(f"the draw {r} does not fall in this leaf ([{before}, +{leaf.weight}))")


# -- what a sample establishes ----------------------------------------------------------


def escape_probability(f: float, k: int) -> float:
    """The chance that k draws all miss a fake fraction f of the committed work."""
    return (1.0 - f) ** k


def min_k(f: float, alpha: float = float(DEFAULT_ALPHA)) -> int:
    """The fewest draws for which a fake fraction f escapes with probability below alpha."""
    if not 0 < f < 1 or not 0 < alpha < 1:
        raise ValueError("f and alpha lie strictly between 0 and 1")
    return math.floor(math.log(alpha) / math.log(1.0 - f)) + 1


def real_fraction_bound(k: int, alpha: float = float(DEFAULT_ALPHA)) -> float:
    """With k of k draws valid, at confidence 1 - alpha at least this fraction is real:
    the f with (1 - f)**k = alpha gives 1 - f = alpha**(1/k)."""
    if k <= 0:
        return 0.0
    return float(alpha ** (1.0 / k))


def inflation_fake_fraction(inflation: Fraction) -> Fraction:
    """Inflating delivery by `inflation` (0.05 for 5 %) makes inflation / (1 + inflation) of
    the committed work fake (1/21 = 4.76 % at 5 %)."""
    return inflation / (1 + inflation)


def stream_root(leaves: Iterator[Leaf]) -> WorkNode:
    """The root over leaves in tree order, in O(log n) memory (the same tree as `build`:
    nodes are paired left to right at each level and an odd last node is carried up)."""
    stack: list[tuple[int, WorkNode]] = []  # (level, node), levels strictly decreasing
    last: bytes | None = None
    for lf in leaves:
        if last is not None and not last < lf.hash:
            raise ValueError(f"leaves out of order or repeated at {lf.hash.hex()}")
        last = lf.hash
        level, node = 0, leaf_node(lf)
        while stack and stack[-1][0] == level:
            _lv, left = stack.pop()
            node = parent(left, node)
            level += 1
        stack.append((level, node))
    if not stack:
        return EMPTY
    # Fold the leftover complete subtrees right to left, as `build` carries odd nodes up.
    _lv, node = stack.pop()
    while stack:
        _lv, left = stack.pop()
        node = parent(left, node)
    return node


# -- the published sample ---------------------------------------------------------------------


def node_text(node: WorkNode) -> str:
    """A node as a work proof carries it: its 112 packed bytes in base64."""
    return base64.b64encode(node.pack()).decode()


def sample_document(
    levels: list[list[WorkNode]],
    leaves: Sequence[Leaf],
    beacon: bytes,
    k: int,
    evidence: Callable[[int], tuple[Mapping[str, object], Mapping[str, object]]],
) -> dict[str, object]:
    """The sample a work proof publishes: the k drawn leaves (with replacement, in draw order)
    with their jobs and share fields (`evidence(index)` gives both, as the proof format writes
    them) and every sibling their paths need, each once (`nodes`: [level, index, node])."""
    root = levels[-1][0]
    n = len(leaves)
    samples: list[dict[str, object]] = []
    needed: set[tuple[int, int]] = set()
    for r in draws(beacon, root, k):
        i = locate(levels, r)
        lf = leaves[i]
        job, share = evidence(i)
        samples.append(
            {
                "index": i,
                "leaf": {"hash": lf.hash.hex(), "weight": lf.weight, "tag": lf.tag.hex()},
                "job": dict(job),
                "share": dict(share),
            }
        )
        needed.update((lv, s) for lv, s, _left in path_positions(i, n))
    nodes = [[lv, s, node_text(levels[lv][s])] for lv, s in sorted(needed)]
    return {"root": node_text(root), "leaves": n, "k": k, "samples": samples, "nodes": nodes}
