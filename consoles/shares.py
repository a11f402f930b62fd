"""A KSO's KEK share on their own console: opened from the box the signer sealed to this
console's CURVE key, shown once to be written down; typed back in at a restore or a drill,
checked, and sealed to the signer's share key before it leaves the console.

The coordinator relays boxes it cannot open: a share is in the clear only on its holder's
console (and on paper), and inside the signer while the KEK is rebuilt.
"""

from __future__ import annotations

from shamir_mnemonic import MnemonicError
from shamir_mnemonic.share import Share

from keyrite import sealing

#: words shown per row: 33 words in 7 rows fit an 80-column console
PER_ROW = 5


class ShareError(ValueError):
    """A box this console cannot open, or typed words that are not a share."""


class ShareKeeper:
    """This console's side of KEK shares, for `seat`, with the console's CURVE secret (Z85)."""

    def __init__(self, seat: str, curve_secret: str) -> None:
        self.seat = seat
        self._secret = curve_secret

    def open(self, kek_id: str, box: str) -> str:
        """The share's words, from the box the signer sealed to this console for `kek_id`."""
        try:
            words = sealing.open_sealed(self._secret, box,
                                        sealing.share_context(kek_id, self.seat)).decode()
        except (sealing.SealError, UnicodeDecodeError) as e:
            raise ShareError(f"this share does not open on {self.seat}'s console: {e}") from None
        return normalise(words)

    def seal(self, share_key: str, kek_id: str, typed: str) -> str:
        """What leaves the console at a restore or drill: the checked share sealed to the
        signer's share key for `kek_id`."""
        words = check(typed)
        try:
            return sealing.seal(share_key, words.encode(), sealing.share_context(kek_id, "signer"))
        except sealing.SealError as e:
            raise ShareError(f"the signer's share key is not usable: {e}") from None


def normalise(typed: str) -> str:
    return " ".join(typed.lower().split())


def check(typed: str) -> str:
    """The typed share as one line of words, if it is a SLIP-39 share (its checksum catches a
    word typed wrong or left out); else ShareError naming what is wrong."""
    words = normalise(typed)
    if not words:
        raise ShareError("type the share's words, separated by spaces")
    count = len(words.split())
    try:
        Share.from_mnemonic(words)
    except (MnemonicError, ValueError, KeyError) as e:  # its text quotes the words: never shown
        why = ("its checksum does not match: a word typed wrong, or left out"
               if "checksum" in str(e).lower() else
               "a word is not in the SLIP-39 word list, or the words are not a whole share")
        raise ShareError(f"not a valid share ({count} words typed): {why}") from None
    return words


def rows(words: str) -> list[str]:
    """The share laid out to be copied: numbered words, PER_ROW to a row."""
    listed = words.split()
    return ["  ".join(f"{i + 1:>2}. {w:<10}" for i, w in enumerate(listed[j:j + PER_ROW],
                                                                   start=j)).rstrip()
            for j in range(0, len(listed), PER_ROW)]
