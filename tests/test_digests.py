"""The PGP word list and the two ways officers read a digest: colon hex and PGP words."""

from __future__ import annotations

import hashlib

import pytest

from ceremony._pgpwords import EVEN, ODD
from ceremony.digests import colon_hex, from_colon_hex, pgp_words

#: SHA-256 of the EVEN words, then the ODD words, joined by newlines: the same pin a public Kotlin
#: copy of the list carries, so any edit to either list (a typo, a swap, a case change) fails here.
LIST_SHA256 = "e9b7b0052233a74aa56724ed3f79c272036aed68d8f4c0856e833c8043b9ac62"

#: The example fingerprint of the PGP word list's published description, with its words.
EXAMPLE_HEX = "E582 94F2 E9A2 2748 6E8B 061B 31CC 528F D7FA 3F19"
EXAMPLE_WORDS = (
    "topmost Istanbul Pluto vagabond treadmill Pacific brackish dictator goldfish Medusa "
    "afflict bravado chatter revolver Dupont midsummer stopwatch whimsical cowbell bottomless"
)


@pytest.mark.parametrize("words", [EVEN, ODD], ids=["even", "odd"])
def test_each_list_has_256_distinct_words(words: tuple[str, ...]) -> None:
    assert len(words) == 256
    assert len(set(words)) == 256
    assert len({w.lower() for w in words}) == 256  # distinct when read aloud, too


def test_the_lists_do_not_share_a_word() -> None:
    assert not {w.lower() for w in EVEN} & {w.lower() for w in ODD}


def test_first_and_last_words() -> None:
    assert (EVEN[0], EVEN[-1]) == ("aardvark", "Zulu")
    assert (ODD[0], ODD[-1]) == ("adroitness", "Yucatan")


def test_the_lists_match_the_pinned_digest() -> None:
    joined = "\n".join(EVEN) + "\n" + "\n".join(ODD)
    assert hashlib.sha256(joined.encode()).hexdigest() == LIST_SHA256


def test_pgp_words_of_the_published_example() -> None:
    assert pgp_words(from_colon_hex(EXAMPLE_HEX)) == EXAMPLE_WORDS


def test_pgp_words_alternate_lists_by_position() -> None:
    assert pgp_words("0000ffff") == "aardvark adroitness Zulu Yucatan"


def test_colon_hex_as_openssl_prints_it() -> None:
    assert colon_hex("E58294F2") == "e5:82:94:f2"
    digest = hashlib.sha256(b"abc").hexdigest()
    assert colon_hex(digest).startswith("ba:78:16:bf:")
    assert from_colon_hex(colon_hex(digest)) == digest
