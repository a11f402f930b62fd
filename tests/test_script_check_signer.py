"""`keyrite script check SCRIPT --signer signer.toml`: a script judged against the signer that
will run it, from its config alone, before the day (signer_shim.script_fit). No token is
made or touched: the configs name modules and tokens that need not exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ceremony.script import bundled_script_path
from ceremony.script.load import load_script
from signer_shim import script_fit
from signer_shim.config import SignerConfig
from signer_shim.opendnssec.ods_config import OdsConfig

HERE = Path(__file__).resolve().parent
WRAP = HERE / "scripts" / "keygen-wrap.toml"
NO_BACKUP = HERE / "scripts" / "keygen-no-backup.toml"
KEYRITE = [sys.executable, "-m", "keyrite.cli"]


def pkcs11(tmp_path: Path, *, method: str = "tokendir", profile: str = "",
           module: str = "/usr/lib/softhsm/libsofthsm2.so") -> Path:
    config = SignerConfig(
        name="standby", role="standby", module=Path(module),
        softhsm2_conf=tmp_path / "softhsm2.conf", token_label="t", user_pin="1234",
        state_dir=tmp_path / "state", host_key_path=tmp_path / "host_key", profile=profile,
        backup_method=method)
    return config.save(tmp_path / f"signer-{method}-{profile or 'auto'}.toml")


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, "script", "check", *args], capture_output=True, text=True,
                          timeout=60)


def test_the_bundled_key_generation_fits_a_softhsm_token_directory_signer(tmp_path: Path
                                                                            ) -> None:
    out = check(str(bundled_script_path()), "--signer", str(pkcs11(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert "signer: pkcs11, softhsm2, backup method tokendir" in out.stdout


def test_a_kek_and_shares_need_a_wrap_signer(tmp_path: Path) -> None:
    out = check(str(WRAP), "--signer", str(pkcs11(tmp_path)))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "step 3 (hsm.kek): this signer backs up by copying its token directory" in out.stderr
    assert "step 10 (drive.verify): KEK shares open a wrap backup" in out.stderr
    assert "cannot run 2 steps of this script" in out.stderr
    ok = check(str(WRAP), "--signer", str(pkcs11(tmp_path, method="wrap")), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["signer"] == "pkcs11, softhsm2, backup method wrap"


def test_a_wrap_signer_refuses_a_password_drill_and_restore(tmp_path: Path) -> None:
    wrap = pkcs11(tmp_path, method="wrap")
    got = script_fit.problems(load_script(bundled_script_path()), SignerConfig.load(wrap))
    assert got and all("the restore drill needs the KSOs' KEK shares" in g for g in got)
    restore = load_script(bundled_script_path().parent / "standby-restore.toml")
    got = script_fit.problems(restore, SignerConfig.load(wrap))
    assert any("hsm.restore): this signer backs up by wrapping" in g for g in got)
    out = check(str(bundled_script_path()), "--signer", str(wrap), "--json")
    assert out.returncode == 2
    assert all("KEK shares" in e["message"] for e in json.loads(out.stdout)["errors"])


def test_opencryptoki_cannot_back_up_nor_make_ec_keys(tmp_path: Path) -> None:
    okc = pkcs11(tmp_path, profile="opencryptoki-sw")
    assert check(str(NO_BACKUP), "--signer", str(okc)).returncode == 0
    got = script_fit.problems(load_script(bundled_script_path()), SignerConfig.load(okc))
    assert any("hsm.backup): the opencryptoki software token keeps its keys" in g for g in got)
    wrap = script_fit.problems(load_script(WRAP), SignerConfig.load(
        pkcs11(tmp_path, profile="opencryptoki-sw", method="wrap")))
    assert "step 3 (hsm.kek): the opencryptoki software token cannot wrap: it rejects " \
        "CKA_TRUSTED, CKA_WRAP_WITH_TRUSTED (profile 'opencryptoki-sw')" in wrap
    ec = load_script(WRAP)  # its policy has an ECDSA/P-256 ZSK; opencryptoki 3.8 has no EC
    generate = [s for s in ec.steps if s.action == "hsm.generate"]
    assert not generate  # (the wrap script does not generate; the mini script does)
    mini = load_script(HERE / "scripts" / "mini.toml")
    got = script_fit.problems(mini, SignerConfig.load(okc))
    assert any("hsm.generate): the opencryptoki software token cannot generate ECDSA/P-256"
               in g for g in got)


def test_a_module_no_profile_names_is_judged_on_the_method_alone(tmp_path: Path) -> None:
    other = pkcs11(tmp_path, module="/opt/vendor/libhsm.so", method="wrap")
    out = check(str(WRAP), "--signer", str(other))
    assert out.returncode == 0, out.stderr
    assert "profile told by the token (not checked here)" in out.stdout


def test_opendnssec_takes_no_kek(tmp_path: Path) -> None:
    ods = OdsConfig(name="standby", role="standby", state_dir=tmp_path / "state",
                    host_key_path=tmp_path / "key", conf=tmp_path / "conf.xml",
                    softhsm2_conf=tmp_path / "softhsm2.conf")
    got = script_fit.problems(load_script(WRAP), ods)
    assert [g.split(":")[0] for g in got] == ["step 3 (hsm.kek)", "step 10 (drive.verify)"]
    assert script_fit.problems(load_script(bundled_script_path()), ods) == []


@pytest.mark.parametrize("content, why", [
    ("not toml = = =", "line 1"),
    ("[signer]\nbackend = \"hsm9000\"\n", "unknown"),
    ("", ""),
])
def test_a_signer_config_that_does_not_read_is_bad_input(tmp_path: Path, content: str,
                                                         why: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    out = check(str(WRAP), "--signer", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert why in out.stderr
    missing = check(str(WRAP), "--signer", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
