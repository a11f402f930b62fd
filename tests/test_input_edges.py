"""Inputs read outside the script and the bus, refused as bad input rather than crashing or
passing: TOML nested hundreds deep in every file keyrite reads with tomllib, names that carry a
trailing newline, and digits that are not ASCII (issue 11, hostile inputs 3 and 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.machine.machine import _normalise
from ceremony.roster import Roster, load_roster
from coordinator.rehearsal.workdir import read_toml
from keyrite.configfile import ConfigError
from keyrite.enroll import EnrollError, make_officer, read_entry
from keyrite.exits import BadInput
from signer_shim.backends import load_signer_config
from signer_shim.opendnssec.ods_config import ods_config_from_toml
from signer_shim.tokenid import is_fingerprint

DEEP = "x = " + "[" * 600 + "]" * 600 + "\n"


def test_deep_toml_is_bad_input_everywhere(tmp_path: Path) -> None:
    f = tmp_path / "deep.toml"
    f.write_text(DEEP)
    with pytest.raises(BadInput, match="nested too deeply"):
        load_roster(f)
    with pytest.raises(BadInput, match="nested too deeply"):
        read_toml(f)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_signer_config(f)
    with pytest.raises(ConfigError, match="nested too deeply"):
        ods_config_from_toml(DEEP, str(f))
    d = tmp_path / "officer"
    make_officer(d, role="KSO", seat="KSO1", name="Officer A", passphrase=b"a passphrase here")
    (d / "officer.toml").write_text(DEEP)
    with pytest.raises(EnrollError, match="nested too deeply"):
        read_entry(d)


def test_a_seat_or_role_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EnrollError, match="seat"):
        make_officer(tmp_path / "a", role="KSO", seat="KSO1\n", name="A", passphrase=b"x" * 12)
    with pytest.raises(EnrollError, match="role"):
        make_officer(tmp_path / "b", role="KSO\n", seat="KSO1", name="A", passphrase=b"x" * 12)
    entry = {"seat": "KSO1\n", "role": "KSO", "person": "a", "name": "A", "organisation": "O",
             "signing_key": "MCowBQYDK2VwAyEA" + "A" * 43 + "="}
    with pytest.raises(BadInput, match="is not a seat name"):
        Roster.from_dict({"officers": [entry]})


def test_a_fingerprint_with_a_trailing_newline_is_not_one() -> None:
    fp = "-".join(["0a1b"] * 10)
    assert is_fingerprint(fp)
    assert not is_fingerprint(fp + "\n")


def test_a_key_count_in_other_digits_is_not_the_number() -> None:
    assert _normalise("hsm.key_count", "0140") == "140"
    assert _normalise("hsm.key_count", "١٤٠") != "140"
    assert _normalise("hsm.key_count", "1" * 5000) == "1" * 5000  # compared as text, not int()
