"""The signer on a second PKCS#11 implementation: opencryptoki 3.8's software token, in a private
pkcsslotd (tests/okc_helpers.py), reached through the real shim over real SSH as on SoftHSM2.

Listing, the fingerprint, generation (RSA-2048), the inventory diff, purge and the key checks
must behave as on SoftHSM2; what this token lacks (EC mechanisms, any backup) is refused at plan
time naming why. Counts are checked with OpenSC's pkcs11-tool on opencryptoki's module and with
pkcsconf, not with keyrite's code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ceremony.durations import MONTH, YEAR
from coordinator.shim_client import ShimClient
from signer_shim.config import SignerConfig
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import PolicyKeys, SignerError
from signer_shim.keystate import KeyState, load_keystate, save_keystate
from signer_shim.pkcs11 import profiles
from signer_shim.pkcs11.inventory import key_problems
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.workerclient import WorkerClient
from signer_shim.tokenid import is_fingerprint
from staging.fixture import SHAPES, Figures, expected_figures, seed_records
from staging.standup import ShimFiles, ShimProcess, client_of, write_shim_files
from tests import okc_helpers
from tests.okc_helpers import OkcToken
from tests.shim_helpers import approve, cast_authority

pytestmark = pytest.mark.skipif(bool(okc_helpers.unavailable()),
                                reason=okc_helpers.unavailable() or "opencryptoki runs")

WAIT = 120
LABEL = "okc-rehearsal"
RSA_POLICIES = (
    PolicyKeys(policy="default", role="KSK", algorithm="RSA/2048", lifetime_seconds=YEAR),
    PolicyKeys(policy="default", role="ZSK", algorithm="RSA/2048", lifetime_seconds=3 * MONTH),
)
EC_POLICY = PolicyKeys(policy="default", role="ZSK", algorithm="ECDSA/P-256",
                       lifetime_seconds=3 * MONTH)


@pytest.fixture
def okc(tmp_path: Path) -> Iterator[OkcToken]:
    with okc_helpers.okc_token(tmp_path / "okc", LABEL) as token:
        yield token


def okc_config(token: OkcToken, tmp_path: Path, profile: str = "opencryptoki-sw"
               ) -> SignerConfig:
    state = tmp_path / "signer"
    state.mkdir(exist_ok=True)
    if not (state / "keystate.json").exists():  # one zone on the policy: counts are per zone
        save_keystate(state / "keystate.json", KeyState({"default": ("example.org",)}, {}))
    return SignerConfig(
        name="okc", role="standby", module=token.module,
        softhsm2_conf=state / "unused-softhsm2.conf",  # required key, not read by this module
        token_label=token.label, user_pin=token.user_pin, state_dir=state,
        host_key_path=ensure_host_key(state / "ssh_host_ed25519_key"),
        profile=profile, launcher=token.launcher)


@dataclass
class OkcShim:
    token: OkcToken
    config: SignerConfig
    files: ShimFiles
    proc: ShimProcess

    def client(self) -> ShimClient:
        return client_of(self.files, self.proc, WAIT)


@pytest.fixture
def shim(okc: OkcToken, tmp_path: Path) -> Iterator[OkcShim]:
    config = okc_config(okc, tmp_path)
    path = config.save(tmp_path / "signer.toml")
    files = write_shim_files(tmp_path / "shim", path, cast_authority())
    s = OkcShim(okc, config, files, ShimProcess(files.config))
    try:
        yield s
    finally:
        s.proc.stop()  # before the fixture ends pkcsslotd: its workers leave first


def locators(c: ShimClient) -> list[str]:
    return [k.locator for k in c.inventory().keys]


def test_the_token_is_private_and_initialised_by_pkcsconf(okc: OkcToken) -> None:
    info = okc.pkcsconf("-t")
    assert f"Label: {LABEL}" in info and "TOKEN_INITIALIZED" in info
    assert "USER_PIN_INITIALIZED" in info
    assert okc.private_key_ids() == []
    assert "EC-KEY-PAIR-GEN" not in okc.mechanisms()  # what the profile says it lacks
    assert "RSA-PKCS-KEY-PAIR-GEN" in okc.mechanisms()
    assert (okc.directory / "lib" / "swtok" / "NVTOK.DAT").exists()  # its state is ours


def test_the_signer_config_round_trips_profile_and_launcher(okc: OkcToken,
                                                            tmp_path: Path) -> None:
    config = okc_config(okc, tmp_path)
    loaded = SignerConfig.load(config.save(tmp_path / "signer.toml"))
    assert loaded.profile == "opencryptoki-sw" and loaded.launcher == okc.launcher
    plain = replace(config, profile="", launcher=())
    assert "profile" not in plain.to_toml() and "launcher" not in plain.to_toml()
    assert SignerConfig.from_toml(plain.to_toml()).launcher == ()


def test_the_profile_is_told_by_the_token_itself(okc: OkcToken, tmp_path: Path) -> None:
    with Pkcs11Signer(okc_config(okc, tmp_path, profile="")) as s:
        assert s.profile is profiles.OPENCRYPTOKI_SW
        fp = s.fingerprint()
        with pytest.raises(SignerError, match="a restore drill is refused: the opencryptoki"):
            s.restore_drill("key-backup-2026-12-07.tar.gz", "pw")
        with pytest.raises(SignerError, match="a restore is refused"):
            s.plan_restore("key-backup-2026-12-07.tar.gz", "00" * 32)
    assert is_fingerprint(fp)
    with Pkcs11Signer(replace(okc_config(okc, tmp_path), name="again")) as s:
        assert s.fingerprint() == fp


def test_list_fingerprint_and_refusals_at_plan_time_through_the_shim(shim: OkcShim) -> None:
    with shim.client() as c:
        assert locators(c) == [] and c.inventory().repository == LABEL
        fp = c.fingerprint()
        assert is_fingerprint(fp) and c.fingerprint() == fp
        with pytest.raises(SignerError, match="no CKM_EC_KEY_PAIR_GEN"):
            c.plan_generate([EC_POLICY], "P6M")
        with pytest.raises(SignerError, match="a backup is refused.*CKM_AES_KEY_WRAP_PAD"):
            c.plan_backup("2026-12-07")
    assert shim.token.private_key_ids() == []


def test_generate_purge_and_key_checks_through_the_shim(shim: OkcShim) -> None:
    with shim.client() as c:
        op = c.plan_generate(list(RSA_POLICIES), "P6M")
        result = c.execute(op, approve(op, "sa1"))
        made = sorted(result["generated"])
        assert result["before"] == 0 and result["after"] == result["added"] == len(made) >= 3
        assert locators(c) == made
        assert shim.token.private_key_ids() == made  # the token's own tools agree

        # the key-state checks, on this token's attributes and signatures
        with Pkcs11Signer(replace(shim.config, name="checker")) as s:
            for loc in made:
                assert key_problems(s.key_attributes(loc), loc, "RSA/2048") == []
            public = serialization.load_der_public_key(s.public_key_der(made[0]))
            assert isinstance(public, rsa.RSAPublicKey)
            signature = s.sign(made[0], b"zone data", "SHA256_RSA_PKCS")  # via DigestInfo
            public.verify(signature, b"zone data", padding.PKCS1v15(), hashes.SHA256())

        # two keys die in the key state; the purge plans exactly them and removes only them
        ks_path = shim.config.keystate_path
        dead = made[:2]
        save_keystate(ks_path, load_keystate(ks_path).with_state(dead, "dead"))
        purge = c.plan_purge()
        assert sorted(purge["delete"]) == dead
        gone = c.execute(purge, approve(purge, "sa1"))
        assert sorted(gone["deleted"]) == dead
        assert gone["before"] == len(made) and gone["after"] == len(made) - 2
        assert locators(c) == made[2:]
    assert shim.token.private_key_ids() == made[2:]


def test_a_soft_hsm_profile_keeps_its_backup(tmp_path: Path) -> None:
    assert profiles.for_token({"manufacturer_id": "SoftHSM project",
                               "model": "SoftHSM v2"}) is profiles.SOFTHSM2
    profiles.SOFTHSM2.refuse_backup()  # no refusal
    profiles.SOFTHSM2.refuse_algorithms(["ECDSA/P-256", "RSA/2048"])
    with pytest.raises(SignerError, match="no token profile for manufacturer"):
        profiles.for_token({"manufacturer_id": "Acme", "model": "HSM 9000"})
    with pytest.raises(SignerError, match="unknown token profile"):
        profiles.by_name("acme")


def seed_small(token: OkcToken, config: SignerConfig) -> Figures:
    """The small rehearsal's token (6 keys, 2 dead, 1 unused ZSK, 3 in use), on RSA-2048 as
    this token has no EC, with the key state a previous ceremony left."""
    zones, records = seed_records(RSA_POLICIES, SHAPES["small"])
    worker = WorkerClient(token.module, config.softhsm2_conf, token.label, token.user_pin,
                          launcher=token.launcher)
    try:
        worker.call("generate", {"keys": [{"locator": r.locator, "algorithm": r.algorithm}
                                          for r in records]})
    finally:
        worker.close()
    save_keystate(config.keystate_path, KeyState(zones, {r.locator: r for r in records}))
    return expected_figures(RSA_POLICIES, SHAPES["small"], records, "P14M")


def test_the_small_rehearsals_hsm_steps_through_the_shim(shim: OkcShim) -> None:
    """The signer half of the small rehearsal (list, fingerprint, purge, generate P14M, the
    backup refused) with the rehearsal's own figures, counted by pkcs11-tool at each step."""
    figures = seed_small(shim.token, shim.config)
    assert (figures.keys, figures.dead, figures.after_purge) == (6, 2, 4)
    token = shim.token
    with shim.client() as c:
        fp = c.fingerprint()
        assert len(locators(c)) == len(token.private_key_ids()) == figures.keys
        purge = c.plan_purge()
        assert len(purge["delete"]) == figures.dead
        c.execute(purge, approve(purge, "sa1"))
        assert len(locators(c)) == len(token.private_key_ids()) == figures.after_purge
        gen = c.plan_generate(list(RSA_POLICIES), figures.duration)
        result = c.execute(gen, approve(gen, "sa1"))
        assert result["added"] == len(result["generated"]) == figures.to_generate
        assert len(locators(c)) == figures.after_generate
        assert token.private_key_ids() == locators(c)
        with pytest.raises(SignerError, match="a backup is refused"):
            c.plan_backup("2026-12-07")
        assert c.fingerprint() == fp
