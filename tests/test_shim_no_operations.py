"""A ceremony with no HSM change (an annual audit of the bags) starts, live or rehearsed (issue
14): the shim accepts an authority with no operations and refuses every state-changing one;
`keyrite stage` stages such a script with its own cast, and both the shim and the coordinator it
staged start. A script with no signer stages no shim and says so."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from ceremony.script.load import load_script
from coordinator.live.stage import instructions, stage
from signer_shim.authority import Authority, QuorumRefused, check_quorum
from signer_shim.config import ConfigError
from staging.standup import ShimProcess
from tests.live_helpers import coordinator_started
from tests.shim_helpers import approve, as_dicts, cast_authority

SCRIPTS = Path(__file__).parent / "scripts"
HEAD = '[ceremony]\nid = "audit"\nscript_sha256 = "' + "ab" * 32 + '"\n'


def officers_toml() -> str:
    text = cast_authority().to_toml()
    return text[text.index("[[officers]]"):text.index("[[operations]]")]


@pytest.mark.parametrize("operations", ["", "operations = []\n"])
def test_an_authority_with_no_operations_loads_and_refuses_every_operation(
        operations: str) -> None:
    a = Authority.from_toml(operations + HEAD + officers_toml(), "authority.toml")
    assert a.rules == ()
    assert Authority.from_toml(a.to_toml()) == a  # written and read back the same
    op = {"op": "purge", "token": "t", "delete": ["01"]}
    with pytest.raises(QuorumRefused, match="this signer accepts no 'purge' operation"):
        check_quorum(a, op, as_dicts(approve(op, "sa1")), now=time.time(), used_nonces={},
                     request_key="r1")


def test_an_authority_still_refuses_a_malformed_operations_key() -> None:
    with pytest.raises(ConfigError, match="operations must be a list of tables"):
        Authority.from_toml('operations = "none"\n' + HEAD + officers_toml())


def test_a_staged_audit_with_no_operations_starts_its_shim_and_coordinator(
        tmp_path: Path) -> None:
    path = SCRIPTS / "audit-no-operations.toml"
    s = stage(tmp_path / "c", fixture="small", script_path=path)
    assert s.shim is not None
    authority = tomllib.loads((s.shim.parent / "authority.toml").read_text())
    assert "operations" not in authority
    # the roster is the script's own cast: no seat of a role the script lacks
    roster = tomllib.loads((s.live / "roster.toml").read_text())
    assert {o["role"] for o in roster["officers"]} == set(load_script(path).roles)
    with ShimProcess(s.shim, wait=60) as shim:
        assert shim.port > 0
    printed, logged = coordinator_started(s.coordinator, tmp_path / "c.log")
    assert "commands on" in printed, logged[-2000:]
    assert "ceremony bag-audit" in printed


def test_a_script_with_no_signer_stages_no_shim_and_says_so(tmp_path: Path) -> None:
    s = stage(tmp_path / "c", fixture="small", script_path=SCRIPTS / "no-signer.toml")
    assert s.shim is None and not (s.live / "shim").exists()
    assert not (s.root / "signer").exists()
    text = instructions(s)
    assert " shim --config" not in text
    assert "no signer shim: the script declares no signer" in text
    assert " coordinator --config " in text
