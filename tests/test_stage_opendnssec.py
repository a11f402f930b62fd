"""`keyrite stage --signer opendnssec`: a live ceremony staged with a private OpenDNSSEC 2.1 as
its signer (staging/ods.py, as `keyrite rehearse --signer opendnssec` makes it), its
ods-enforcerd run by the staged ceremony's first command (`python -m staging.ods --config`),
then the staged shim, reached over SSH with the coordinator's own client and config.

The counts are checked with OpenDNSSEC's own tools, not keyrite's code: `ods-hsmutil list`
(keys on the token), `ods-enforcer backup list --repository` (every key the enforcer holds)
and `ods-enforcer key list` (the keys handed to zones, a subset: the rest are the pool the
enforcer's plan counts as unused). Everything runs on 127.0.0.1, and every daemon is stopped
and checked gone. Skipped, with the reason, where OpenDNSSEC is not installed; the refusals
and the help need none and always run.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ceremony.script import bundled_script_path
from ceremony.script.load import load_script
from coordinator.live.config import CoordinatorConfig
from coordinator.rehearsal.workdir import policy_keys
from coordinator.shim_client import ShimClient
from signer_shim.opendnssec.ods_config import load_ods_config
from signer_shim.opendnssec.ods_daemon import accepts
from signer_shim.opendnssec.ods_kasp import parse_key_list
from staging import ods
from staging.standup import ShimProcess
from tests.live_helpers import coordinator_started
from tests.test_rehearse_opendnssec import enforcerds_under

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]
UNAVAILABLE = ods.unavailable()
needs_ods = pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE or "OpenDNSSEC installed")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The bundled key generation staged on OpenDNSSEC (small fixture), as --json says it."""
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    root = tmp_path_factory.mktemp("ods") / "c"
    p = _run("stage", "--signer", "opendnssec", "--workdir", str(root), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads(p.stdout)
    yield s
    assert enforcerds_under(root) == [], "an ods-enforcerd outlived the test"


class Enforcer:
    """The staged enforcer command as printed, in its own session (a terminal's foreground
    process group: Ctrl-C is SIGINT to all of it)."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(shlex.split(command), cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        self.first = self.proc.stdout.readline() if ready else ""
        if "ods-enforcerd running (pid" not in self.first:
            self.ctrl_c()
            raise AssertionError(f"the enforcer did not start: {self.first!r}")
        self.pid = int(re.search(r"pid (\d+)", self.first).group(1))  # type: ignore[union-attr]

    def ctrl_c(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, rest


@pytest.fixture
def enforcer(staged: dict[str, Any]) -> Iterator[Enforcer]:
    e = Enforcer(staged["enforcer"]["command"])
    try:
        yield e
    finally:
        e.ctrl_c()


def _tool(*args: str, conf: Path) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=60,
                       env={"SOFTHSM2_CONF": str(conf), "PATH": os.environ["PATH"]})
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@needs_ods
def test_the_staged_signer_is_a_private_opendnssec(staged: dict[str, Any]) -> None:
    root = Path(staged["root"])
    assert staged["signer"] == "opendnssec"
    config = Path(staged["enforcer"]["config"])
    assert config == root / "signer" / "signer.toml"
    assert tomllib.loads(config.read_text())["signer"]["backend"] == "opendnssec"
    ods_config = load_ods_config(config)
    assert ods_config.conf == root / "signer" / "conf.xml"
    assert str(ods_config.softhsm2_conf).startswith(str(root / "signer"))
    shim = tomllib.loads(Path(staged["shim"]).read_text())["shim"]
    assert shim["signer_config"] == str(config) and shim["listen"] == "127.0.0.1"
    cfg = CoordinatorConfig.load(Path(staged["coordinator"]))
    assert (cfg.signer_host, cfg.signer_port) == ("127.0.0.1", staged["ports"]["shim"])
    assert shim["port"] == staged["ports"]["shim"]
    assert enforcerds_under(root) == []  # staging leaves none running


@needs_ods
def test_the_shim_answers_over_ssh_with_the_enforcers_counts(
        staged: dict[str, Any], enforcer: Enforcer) -> None:
    root = Path(staged["root"])
    cfg = CoordinatorConfig.load(Path(staged["coordinator"]))
    record = tomllib.loads((root / "previous-record.toml").read_text())
    ods_config = load_ods_config(Path(staged["enforcer"]["config"]))
    sock = root / "signer" / "enforcer.sock"
    assert enforcerds_under(root) == [enforcer.pid]

    # OpenDNSSEC's own word on its keys
    hsm = _tool("ods-hsmutil", "-c", str(ods_config.conf), "list", "SoftHSM",
                conf=ods_config.softhsm2_conf)
    on_token = sorted(re.findall(r"^SoftHSM\s+([0-9a-f]{32})\s", hsm, re.M))
    assert f"{len(on_token)} keys found." in hsm
    held = sorted(re.findall(r"^([0-9a-f]{32})\s", _tool(
        "ods-enforcer", "-s", str(sock), "backup", "list", "--repository", "SoftHSM",
        conf=ods_config.softhsm2_conf), re.M))
    zoned = parse_key_list(_tool("ods-enforcer", "-s", str(sock), "key", "list", "--all",
                                 "--verbose", "--parsable", conf=ods_config.softhsm2_conf))
    assert on_token and held == on_token
    assert {z.locator for z in zoned} <= set(held)

    script = load_script(bundled_script_path())
    generate = next(st for st in script.steps if st.action == "hsm.generate")
    with ShimProcess(Path(staged["shim"]), wait=60) as shim:
        assert shim.port == cfg.signer_port
        with ShimClient(cfg.signer_host, cfg.signer_port, client_key=cfg.signer_client_key,
                        host_key_pin=record["signer_host_key"]) as client:
            info = client.info()
            assert info["backend"] == "opendnssec" and info["repository"] == "SoftHSM"
            assert info["host_key"] == record["signer_host_key"]
            assert client.fingerprint() == record["hsm_fingerprint"]
            keys = client.inventory().keys
            assert sorted(k.locator for k in keys) == on_token
            assert len(keys) == int(record["key_count"]) == len(held)
            plan = client.plan_generate(policy_keys(script), str(generate.duration))
    # the enforcer's plan: its pool (held, not handed to a zone) is what it counts unused
    assert [(b["role"], b["zones"]) for b in plan["batches"]] == [("KSK", 1), ("ZSK", 1)]
    assert sum(b["unused"] for b in plan["batches"]) == len(held) - len(zoned)
    # P14M is ceil(434/365) = 2 KSKs and ceil(434/93) = 5 ZSKs, less the pool's unused ones
    assert str(generate.duration) == "P14M"
    assert [b["count"] for b in plan["batches"]] == [
        max(0, n - b["unused"]) for n, b in zip((2, 5), plan["batches"], strict=True)]

    out = "".join(coordinator_started(Path(staged["coordinator"]),
                                      root / "coordinator-test.log"))
    assert "commands on" in out, out[-3000:]

    code, said = enforcer.ctrl_c()  # Ctrl-C in the enforcer's terminal, last
    assert code == 0, said
    assert "ods-enforcerd stopped (SIGINT)" in said
    assert enforcerds_under(root) == []
    assert not sock.exists() or not accepts(sock)


@needs_ods
def test_sigterm_stops_the_enforcer_and_a_killed_runs_leftover_is_stopped(
        staged: dict[str, Any]) -> None:
    root = Path(staged["root"])
    e = Enforcer(staged["enforcer"]["command"])
    e.proc.send_signal(signal.SIGTERM)  # as a service manager stops it
    rest, _ = e.proc.communicate(timeout=30)
    assert e.proc.returncode == 0 and "stopped (SIGTERM)" in rest
    assert enforcerds_under(root) == []

    e = Enforcer(staged["enforcer"]["command"])
    e.proc.kill()  # only the runner: its ods-enforcerd stays, orphaned
    e.proc.communicate(timeout=30)
    assert enforcerds_under(root) == [e.pid]
    p = subprocess.run([*shlex.split(staged["enforcer"]["command"]), "--stop"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "SIGTERM" in p.stdout, p.stdout + p.stderr
    assert enforcerds_under(root) == []
    again = Enforcer(staged["enforcer"]["command"])  # and it starts again after that
    assert again.ctrl_c()[0] == 0
    assert enforcerds_under(root) == []


@needs_ods
def test_the_printed_instructions_start_the_enforcer_before_the_shim(tmp_path: Path) -> None:
    p = _run("stage", "--signer", "opendnssec", "--workdir", str(tmp_path / "c"))
    assert p.returncode == 0, p.stderr[-3000:]
    commands = [line.strip() for line in p.stdout.splitlines() if " --config " in line]
    assert " -m staging.ods --config " in commands[0]
    assert commands[0].endswith(str(tmp_path / "c" / "signer" / "signer.toml"))
    assert " shim --config " in commands[1]
    assert "Ctrl-C" in p.stdout and "private OpenDNSSEC" in p.stdout
    assert enforcerds_under(tmp_path / "c") == []


def test_opendnssec_with_previous_is_refused_naming_the_combination(tmp_path: Path) -> None:
    audit = bundled_script_path().with_name("annual-audit.toml")
    for args in (("--previous", str(tmp_path / "old" / "journal.jsonl"), "--previous-key", "k"),
                 ("--token", str(tmp_path / "old" / "signer"))):
        p = _run("stage", str(audit), "--signer", "opendnssec", "--workdir",
                 str(tmp_path / "c"), *args)
        assert p.returncode == 2, p.stdout + p.stderr
        flat = " ".join(p.stderr.split())
        assert f"--signer opendnssec with {args[0]}" in flat, flat
        assert "--signer pkcs11" in flat and "Traceback" not in flat
        assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("name", ["annual-audit.toml", "standby-restore.toml"])
def test_a_script_continuing_an_earlier_ceremony_is_refused_on_opendnssec(
        name: str, tmp_path: Path) -> None:
    p = _run("stage", str(bundled_script_path().with_name(name)), "--signer", "opendnssec",
             "--workdir", str(tmp_path / "c"))
    assert p.returncode == 2, p.stdout + p.stderr
    flat = " ".join(p.stderr.split())
    assert "--signer opendnssec with a script that opens bags an earlier ceremony sealed" in flat
    assert "Traceback" not in flat
    assert not (tmp_path / "c").exists()


def test_an_unknown_signer_is_refused_by_the_parser(tmp_path: Path) -> None:
    p = _run("stage", "--signer", "hsm9000", "--workdir", str(tmp_path / "c"))
    assert p.returncode == 2 and "invalid choice: 'hsm9000'" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "c").exists()


def test_the_option_is_explained() -> None:
    p = _run("stage", "--help")
    text = " ".join(p.stdout.split())
    assert "--signer {pkcs11,opendnssec}" in text
    assert "'pkcs11' (the default" in text
    assert "python -m staging.ods --config DIR/signer/signer.toml" in text
    assert "Not with --previous or --token" in text


def test_the_enforcer_runner_refuses_a_pkcs11_signer(tmp_path: Path) -> None:
    config = tmp_path / "signer.toml"
    config.write_text('[signer]\nbackend = "pkcs11"\n')
    p = subprocess.run([sys.executable, "-m", "staging.ods", "--config", str(config)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "not a private OpenDNSSEC installation's signer.toml" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_script_with_no_signer_stages_no_opendnssec(tmp_path: Path) -> None:
    """Nothing to run an enforcer for: no installation, no enforcer command, no shim."""
    p = _run("stage", str(ROOT / "tests" / "scripts" / "no-signer.toml"), "--signer",
             "opendnssec", "--workdir", str(tmp_path / "c"), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads(p.stdout)
    assert s["signer"] is None and s["enforcer"] is None and s["shim"] is None
    assert not (tmp_path / "c" / "signer").exists()
