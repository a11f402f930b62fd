"""An officer's console keeps the coordinator honest: it checks each checkpoint of the journal
against the last one it accepted, and cosigns the ones that hold.

A checkpoint is accepted only if it is signed by the coordinator's checkpoint key the console was
given (never a key the coordinator announces itself), it is of the same log (origin), and the log
only grew since the checkpoint accepted before: a larger tree with an RFC 6962 consistency proof
from the accepted one (`coordinator.journal.merkle.verify_consistency`), or the same tree again.
A checkpoint that is smaller (the log shrank), or of the same size with another root, or whose
proof does not hold (the coordinator rewrote entries the console had seen under a signature: a
fork), is refused, and the console keeps the one it had accepted. The console then tells the
coordinator (`refusal_command`), which journals the refusal and shows it on every screen.

An accepted checkpoint is cosigned with the seat's own key as a C2SP cosignature
(c2sp.org/tlog-cosignature, `cosignature/v1`, under the key name `<origin>/<seat>`:
`coordinator.journal.checkpoint.cosign`), sent as `cosign_command`. A v1 cosignature states
that, at its time, the checkpoint is the largest consistent one the cosigner has seen: the console
only ever cosigns the checkpoint it accepted last.

Pure (no clock, file or network): the real console (`consoles.app`) and the rehearsal's scripted
officers (`coordinator.rehearsal.officers`) check and cosign through this same code.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal.checkpoint import BadCheckpoint, Checkpoint, cosign, cosigner_name
from coordinator.journal.merkle import verify_consistency
from coordinator.journal.note import NoteError, Verifier, note_text, open_note

#: the most hashes a consistency proof may hold: about 2 log2(n) for a tree of n leaves
MAX_PROOF = 128


@dataclass(frozen=True)
class Accepted:
    """A checkpoint the console accepted: the signed note as served, and what it states."""

    note: str
    checkpoint: Checkpoint

    @property
    def text(self) -> str:
        """The note's text (origin, size, root): what a cosignature signs."""
        return note_text(self.note)

    @property
    def root(self) -> str:
        return base64.b64encode(self.checkpoint.root).decode()


class Refusal(Exception):
    """A checkpoint this console will not cosign. `kind`: signature (not the coordinator's
    signed checkpoint), origin (another log), shrunk (smaller than the one accepted), fork (the
    same size with another root, or no valid consistency proof from the one accepted).
    `size` and `root` are the refused checkpoint's as far as it could be read."""

    def __init__(self, kind: str, reason: str, size: int, root: str = "") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.size = size
        self.root = root


def opened(note: str, coordinator: Verifier, size: int = 0) -> Accepted:
    """`note` if it is a checkpoint signed by `coordinator` (its other signatures, cosignatures
    included, are ignored); else Refusal (kind signature). `size`: the size announced, named in
    the refusal when the note cannot be read."""
    try:
        text = open_note(note, [coordinator]).text
        return Accepted(note, Checkpoint.parse(text))
    except (NoteError, BadCheckpoint) as e:
        raise Refusal("signature", f"it is not a checkpoint signed by the coordinator's key "
                      f"{coordinator.label()} ({e})", size) from None


def check(last: Accepted | None, note: str, proof: Sequence[str] | None,
          coordinator: Verifier, announced: int = 0) -> Accepted:
    """The checkpoint `note` if this console may accept it after `last` (None: the first it
    sees), given the coordinator's consistency `proof` (base64 hashes) from `last` to it; else
    Refusal saying why. `announced`: the size the view announced, for a note that cannot be
    read."""
    new = opened(note, coordinator, announced)
    cp, size, root = new.checkpoint, new.checkpoint.size, new.root
    if last is None:
        return new
    old = last.checkpoint
    if cp.origin != old.origin:
        raise Refusal("origin", f"it is a checkpoint of {cp.origin!r}, not of {old.origin!r}, "
                      "the log this console accepted checkpoints of", size, root)
    if size < old.size:
        raise Refusal("shrunk", f"it covers {size} entries, fewer than the {old.size} of the one "
                      "accepted before: the journal SHRANK [A13]", size, root)
    if size == old.size:
        if cp.root != old.root:
            raise Refusal("fork", f"it covers the same {size} entries as the one accepted before, "
                          "with another root: the journal FORKED [A13]", size, root)
        return last
    hashes = _hashes(proof)
    if hashes is None or not verify_consistency(old.size, size, old.root, cp.root, hashes):
        why = "no consistency proof" if proof is None else "no valid consistency proof"
        raise Refusal("fork", f"it does not extend checkpoint {old.size} accepted before "
                      f"({why}): the journal FORKED [A13]", size, root)
    return new


def _hashes(proof: Sequence[str] | None) -> list[bytes] | None:
    if proof is None or not isinstance(proof, list) or len(proof) > MAX_PROOF:
        return None
    out = []
    for h in proof:
        if not isinstance(h, str):
            return None
        try:
            out.append(base64.b64decode(h, validate=True))
        except (binascii.Error, ValueError):
            return None
    return out


class Cosigner:
    """One console's memory of the record: the last checkpoint it accepted (`accepted`), and
    the last refusal. `offer` checks the next one; `accepted` changes only when it holds."""

    def __init__(self, coordinator: Verifier, accepted: Accepted | None = None) -> None:
        self.coordinator = coordinator
        self.accepted = accepted
        self.refusal: Refusal | None = None
        self.refused: set[tuple[int, str]] = set()  # (size, root) refused: told once

    @property
    def size(self) -> int:
        """The tree size a consistency proof is asked from (0: nothing accepted yet)."""
        return self.accepted.checkpoint.size if self.accepted is not None else 0

    def offer(self, note: str, proof: Sequence[str] | None, announced: int = 0) -> Accepted:
        """Check `note` (with the coordinator's `proof` from `size`); keep it if it holds, else
        remember and raise the Refusal."""
        try:
            self.accepted = check(self.accepted, note, proof, self.coordinator, announced)
        except Refusal as r:
            self.refusal = r
            raise
        return self.accepted

    def first_refusal(self, r: Refusal) -> bool:
        """Whether `r` is news: the coordinator is told of each refused checkpoint once."""
        key = (r.size, r.root)
        if key in self.refused:
            return False
        self.refused.add(key)
        return True


def cosign_command(accepted: Accepted, seat: str, key: Ed25519PrivateKey,
                   now: float) -> dict[str, Any]:
    """The `cosign` command carrying `seat`'s cosignature of `accepted` at `now`."""
    name = cosigner_name(accepted.checkpoint.origin, seat)
    return {"type": "cosign", "seat": seat, "size": accepted.checkpoint.size,
            "root": accepted.root, "cosignature": cosign(accepted.text, name, key, int(now))}


def refusal_command(seat: str, refusal: Refusal) -> dict[str, Any]:
    """The `cosign` command telling the coordinator this console refuses to cosign."""
    return {"type": "cosign", "seat": seat, "size": refusal.size, "root": refusal.root,
            "refusal": refusal.reason}
