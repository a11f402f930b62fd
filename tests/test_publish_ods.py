"""The OpenDNSSEC backend's generate result carries each new key's public key with the
enforcer's role, algorithm and zone, so keyrite publishes DNSKEY and DS records; those DS records
equal `ldns-key2ds` run on the same DNSKEYs, and the enforcer's own `key export --ds` of the KSK it
put in the zone. Debian's real enforcer and SoftHSM2; skipped where they are not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator.publish import keys_from_results, render
from signer_shim.opendnssec.signer import OdsSigner
from tests.ods_helpers import EC_POLICIES, running_installation, wait_until_idle
from tests.test_publish import ldns_ds, needs_ldns, ours

pytestmark = [needs_ldns, pytest.mark.skipif(
    any(shutil.which(t, path="/usr/bin:/usr/sbin:/bin") is None
        for t in ("ods-enforcerd", "ods-enforcer", "ods-hsmutil", "softhsm2-util")),
    reason="OpenDNSSEC (ods-enforcer, ods-hsmutil) or SoftHSM2 is not installed")]


def test_generated_keys_publish_dnskey_and_ds_equal_to_ldns(tmp_path: Path) -> None:
    with running_installation(tmp_path / "ods", {"default": ("zone01.example",)}) as (inst, d):
        signer = OdsSigner.from_file(inst.config_path)
        result = signer.execute(signer.plan_generate(EC_POLICIES, "P14M"), [])
        keys = keys_from_results([(44, result)])
        assert sorted(k.locator for k in keys) == sorted(result["generated"])
        assert sorted((k.role, k.zone, k.dnssec_algorithm) for k in keys) == (
            [("KSK", "zone01.example", 13)] * 2 + [("ZSK", "zone01.example", 13)] * 5)
        dnskeys = render(keys, "dnskey").splitlines()
        assert len(dnskeys) == 7
        assert sorted(line.split()[3] for line in dnskeys) == ["256"] * 5 + ["257"] * 2
        ksks = [k for k in keys if k.role == "KSK"]
        for k in ksks:
            assert ours(k.ds_rr()) == ldns_ds(k.dnskey_rr(), tmp_path)
        assert len(render(keys, "ds").splitlines()) == 2
        # the enforcer hands a KSK to the zone: its own DS export names one of ours
        d.command("flush")
        wait_until_idle(d)
        out = subprocess.run(["ods-enforcer", "-s", str(inst.socket), "key", "export", "--zone",
                              "zone01.example", "--keytype", "ksk", "--keystate",
                              "publish", "--ds"],
                             capture_output=True, text=True, timeout=60).stdout
        exported = {" ".join([f[0], *f[3:]]).lower() for f in
                    (line.split() for line in out.splitlines()) if len(f) > 6 and f[3] == "DS"}
        assert exported and exported <= {ours(k.ds_rr()) for k in ksks}, (exported, out)
