"""Fixtures shared by the test suite.

`softhsm_token`: a fresh SoftHSM2 token in a private token directory for each test; the test
process's own environment is never given SOFTHSM2_CONF (only the children that need it are).
`small_rehearsal`: the `small` rehearsal fixture on ECDSA keys (fast): 6 keys, 2 of them dead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceremony.durations import MONTH, YEAR
from signer_shim.interface import PolicyKeys
from signer_shim.pkcs11.softhsm import SoftHSMToken, create_token
from staging.fixture import RehearsalToken, seed_rehearsal_token

#: The seed's policy shape on ECDSA keys, which SoftHSM makes ~20 times faster than RSA.
EC_POLICIES = (
    PolicyKeys(policy="default", role="KSK", algorithm="ECDSA/P-256", lifetime_seconds=YEAR),
    PolicyKeys(policy="default", role="ZSK", algorithm="ECDSA/P-256", lifetime_seconds=3 * MONTH),
)


@pytest.fixture
def softhsm_token(tmp_path: Path) -> Iterator[SoftHSMToken]:
    before = os.environ.get("SOFTHSM2_CONF")
    yield create_token(tmp_path / "hsm", "test-token")
    assert os.environ.get("SOFTHSM2_CONF") == before, "a test changed SOFTHSM2_CONF in-process"


@pytest.fixture
def small_rehearsal(tmp_path: Path) -> RehearsalToken:
    return seed_rehearsal_token(tmp_path / "rehearsal", EC_POLICIES, shape="small")
