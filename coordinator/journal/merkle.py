"""RFC 6962 Merkle tree hashing over journal lines, kept incrementally.

A checkpoint commits to every entry before it through one 32-byte root. Recomputing that root
from all leaves at every checkpoint would make a long ceremony's checkpoints O(n) each; the
compact range below keeps only the roots of the perfect subtrees that make up the tree so far
(one per set bit of the size), so an append costs O(log n) hashes and the root is always at hand.

Consistency proofs (RFC 6962 section 2.1.2) let a console that accepted an earlier checkpoint
check that a later one only added entries: `consistency_proof` builds one from the leaves'
hashes (the coordinator's side), `verify_consistency` checks one against the two roots (the
console's side, which holds no leaves).

Pure: bytes in, digests out.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence

_sha256 = hashlib.sha256
_DIGEST = type(_sha256()).digest  # unbound, for map
_LEAF = b"\x00"  # RFC 6962 domain separation: 0x00 for leaves
_NODE = b"\x01"  # ... and 0x01 for interior nodes
EMPTY_ROOT = hashlib.sha256(b"").digest()
_JOIN = b"".join
_NODES = itertools.repeat(_NODE)


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return _sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(_NODE + left + right).digest()


#: Leaves `CompactRange.append` holds before hashing them in one batch.
PENDING_MAX = 256


class CompactRange:
    """The roots of the perfect subtrees covering leaves [0, size), largest first.

    Appending merges equal-height neighbours the way a binary counter carries, so `size`'s binary
    form is exactly the list of heights; `root()` folds them right to left, which is RFC 6962's
    split at the largest power of two.

    `append` only keeps the leaf: leaves are hashed in batches (`extend`), when the tree is read
    (`root`, `copy`, another append of a hash) or `PENDING_MAX` of them wait. The journal appends
    one leaf between two fsyncs, where a hash taken alone costs several times what it costs in
    a batch (cold caches after the sleep); a checkpoint reads the root, so what it signs is the
    same.
    """

    __slots__ = ("_heights", "_hashes", "_size", "_pending")

    def __init__(self) -> None:
        self._heights: list[int] = []
        self._hashes: list[bytes] = []
        self._size = 0  # leaves hashed in
        self._pending: list[bytes] = []  # leaves appended, not yet hashed

    @property
    def size(self) -> int:
        return self._size + len(self._pending)

    def append_leaf_hash(self, h: bytes) -> None:
        if self._pending:
            self._flush()
        self._push(h, 0)  # a leaf is a perfect subtree of height 0

    def append(self, data: bytes) -> None:
        """Append one leaf (raw data); it is hashed with the next batch."""
        pending = self._pending
        pending.append(data)
        if len(pending) >= PENDING_MAX:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._extend(pending)

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaves (raw data), as verifying a journal needs: the leaf hashes in one
        pass, then each perfect subtree that fits at the current size level by level. Every
        hash is computed by `map` rather than a Python loop, which halves the interpreter's
        share of the cost; the hashes are the same as `append`'s, one leaf at a time."""
        if self._pending:
            self._flush()
        self._extend(leaves)

    def _extend(self, leaves: Iterable[bytes]) -> None:
        hashes = list(map(_DIGEST, map(_sha256, map(_LEAF.__add__, leaves))))
        i, n = 0, len(hashes)
        while i < n:
            # the largest perfect subtree that can start at `size` (a multiple of its width)
            # and fits in what is left
            height = (n - i).bit_length() - 1
            if self._size:
                height = min(height, (self._size & -self._size).bit_length() - 1)
            level = hashes[i : i + (1 << height)]
            while len(level) > 1:  # 0x01 || left || right, in one join per node
                nodes = map(_JOIN, zip(_NODES, level[0::2], level[1::2], strict=False))
                level = list(map(_DIGEST, map(_sha256, nodes)))
            self._push(level[0], height)
            i += 1 << height

    def _push(self, h: bytes, height: int) -> None:
        """Append the root of a perfect subtree of `height` (the size must be a multiple of its
        width), merging equal heights as a binary counter carries."""
        heights, hashes = self._heights, self._hashes
        self._size += 1 << height
        while heights and heights[-1] == height:
            heights.pop()
            h = _sha256(_NODE + hashes.pop() + h).digest()
            height += 1
        heights.append(height)
        hashes.append(h)

    def root(self) -> bytes:
        if self._pending:
            self._flush()
        if not self._hashes:
            return EMPTY_ROOT
        it = reversed(self._hashes)
        root = next(it)
        for left in it:
            root = node_hash(left, root)
        return root

    def copy(self) -> CompactRange:
        if self._pending:
            self._flush()
        other = CompactRange()
        other._heights = list(self._heights)
        other._hashes = list(self._hashes)
        other._size = self._size
        return other


def tree_hash(leaves: Iterable[bytes]) -> bytes:
    """The root over `leaves` (raw leaf data), computed by RFC 6962's recursive definition.

    Kept as the plain reading of the RFC so tests can check `CompactRange` against it.
    """
    hashes = [leaf_hash(d) for d in leaves]

    def mth(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return hashes[lo]
        k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    return mth(0, len(hashes)) if hashes else EMPTY_ROOT


# --- consistency proofs (RFC 6962 section 2.1.2) -------------------------------------------------
def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of the leaves [lo, hi) given their leaf hashes (hi > lo)."""
    n = hi - lo
    if n == 1:
        return hashes[lo]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return node_hash(_mth(hashes, lo, lo + k), _mth(hashes, lo + k, hi))


def consistency_proof(leaf_hashes: Sequence[bytes], m: int, n: int | None = None) -> list[bytes]:
    """PROOF(m, D[n]): the RFC 6962 consistency proof that the tree of the first `m` leaves is a
    prefix of the tree of the first `n` (default: all of `leaf_hashes`), as the RFC's SUBPROOF
    builds it, nodes in its order. Empty for m == n and for m == 0 (the empty tree is a prefix
    of every tree). Raises ValueError for sizes out of range."""
    n = len(leaf_hashes) if n is None else n
    if not 0 <= m <= n <= len(leaf_hashes):
        raise ValueError(f"no consistency proof from {m} to {n} over {len(leaf_hashes)} leaves")
    if m in (0, n):
        return []

    def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        # SUBPROOF(m, D[lo:hi], b)
        n = hi - lo
        if m == n:
            return [] if complete else [_mth(leaf_hashes, lo, hi)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return subproof(m, lo, lo + k, complete) + [_mth(leaf_hashes, lo + k, hi)]
        return subproof(m - k, lo + k, hi, False) + [_mth(leaf_hashes, lo, lo + k)]

    return subproof(m, 0, n, True)


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows that the tree of size `m` with root `old_root` is a prefix of the
    tree of size `n` with root `new_root`: the verification of RFC 9162 section 2.1.4.2 (RFC
    6962 gives the proof but no algorithm to check it). Sizes: 0 <= m <= n. Never raises on a
    malformed proof: it is simply not a proof."""
    if not 0 <= m <= n or any(len(h) != 32 for h in proof):
        return False
    if m == n:
        return not proof and old_root == new_root
    if m == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if m & (m - 1) == 0:  # m is a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
