"""The rehearsal fixture reproduces the seed ceremony's figures on a real token:
140 keys, 25 dead -> 115, +85 for P14M -> 200."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer_shim.keystate import load_keystate
from signer_shim.pkcs11.signer import Pkcs11Signer
from staging.fixture import DEFAULT_POLICIES, seed_rehearsal_token
from tests.conftest import EC_POLICIES


def test_default_shape_runs_the_seeds_figures_end_to_end(tmp_path: Path) -> None:
    """The seed's shape on ECDSA keys (fast): every figure the ceremony reads, executed."""
    seen: list[str] = []
    rt = seed_rehearsal_token(tmp_path / "r", EC_POLICIES, progress=lambda d, t, w: seen.append(w))
    assert seen[-1] == "seeded 140 of 140 keys"
    f = rt.figures
    assert (f.keys, f.dead, f.after_purge, f.to_generate, f.after_generate) == (
        140, 25, 115, 85, 200)
    with Pkcs11Signer(rt.config) as s:
        assert len(s.inventory().keys) == 140
        purge = s.plan_purge()
        assert len(purge["delete"]) == 25
        assert s.execute(purge, [])["after"] == 115
        op = s.plan_generate(EC_POLICIES, "P14M")
        assert [(b["role"], b["zones"], b["unused"], b["count"]) for b in op["batches"]] == [
            ("KSK", 13, 1, 25), ("ZSK", 13, 5, 60)]
        result = s.execute(op, [])
        assert (result["before"], result["added"], result["after"]) == (115, 85, 200)
        assert len(s.inventory().keys) == 200
        assert s.plan_generate(EC_POLICIES, "P14M")["batches"][0]["count"] == 0  # pool is full
    state = load_keystate(rt.config.keystate_path)
    assert sum(1 for r in state.keys.values() if r.state == "purged") == 25


@pytest.mark.slow
def test_default_fixture_seeds_the_seeds_140_rsa_keys(tmp_path: Path) -> None:
    """The real default: 140 RSA/2048 keys over two worker processes, then the purge and the
    P14M plan. (Executing the 85 RSA keys would double the time; the ECDSA test does it.)"""
    seen: list[int] = []
    rt = seed_rehearsal_token(tmp_path / "r", DEFAULT_POLICIES,
                              progress=lambda d, t, w: seen.append(d))
    assert seen[-1] == 140 and sorted(seen) == seen
    with Pkcs11Signer(rt.config) as s:
        inv = s.inventory()
        assert len(inv.keys) == 140 and {k.type for k in inv.keys} == {"RSA/2048"}
        assert inv.render().splitlines()[1] == "140 keys found."
        purge = s.plan_purge()
        assert s.execute(purge, []) == {"deleted": purge["delete"], "before": 140, "after": 115}
        op = s.plan_generate(DEFAULT_POLICIES, "P14M")
        assert sum(b["count"] for b in op["batches"]) == rt.figures.to_generate == 85
        assert rt.figures.after_generate == 200
