"""The arrows that must never exist between keyrite's rooms (docs/architecture.md, "Never"),
checked on what a fresh interpreter really loads:

- the ceremony core (script, machine and its replay and view, roster, journal, approvals), and
  the consoles' pure `consoles.actions`, load no I/O library: no zmq, trio, prompt_toolkit,
  asyncssh, pkcs11, pyudev or sqlite3;
- what runs in production (`keyrite coordinator`, `keyrite console`, `keyrite shim`) loads no
  rehearsal, fixture, scripted officer or test code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = ("zmq", "trio", "prompt_toolkit", "asyncssh", "pkcs11", "pyudev", "sqlite3",
                "_sqlite3")
NOT_IN_PRODUCTION = ("rehearsal", "fixture", "scripted", "tests")
#: every module of the core, found on disk (a new one is checked without being listed here)
CEREMONY = tuple(sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in (ROOT / "ceremony").rglob("*.py")))
CORE = (*CEREMONY, "coordinator.journal", "coordinator.transcript",
        "consoles.actions")  # not core, but pure: what a console offers is judged from the view
#: the rest of the repository, which the core never loads
ROOMS = ("keyrite", "coordinator", "consoles", "signer_shim", "staging", "tests")
#: what each production command imports once its arguments are parsed
PRODUCTION = {"coordinator": "coordinator.live.serve", "console": "consoles.app",
              "shim": "signer_shim.server"}


def _loaded(code: str) -> list[str]:
    code += "\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, check=True)
    return out.stdout.split()


def _offenders(modules: list[str], words: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(w in part for part in m.split(".") for w in words))


@pytest.mark.parametrize("module", CORE)
def test_the_core_loads_no_io_library(module: str) -> None:
    loaded = _loaded(f"import {module}")
    assert module in loaded
    assert sorted({m.split(".")[0] for m in loaded} & set(IO_LIBRARIES)) == []


def test_the_core_is_one_package_loading_nothing_else_of_this_repository() -> None:
    assert {"ceremony.machine.machine", "ceremony.script.step_kinds", "ceremony.records",
            "ceremony.view"} <= set(CEREMONY)
    loaded = _loaded("\n".join(f"import {m}" for m in CEREMONY))
    assert sorted(m for m in loaded if m.split(".")[0] in ROOMS) == []


@pytest.mark.parametrize("command", sorted(PRODUCTION))
def test_production_loads_no_rehearsal_fixture_or_test_code(command: str) -> None:
    loaded = _loaded("import keyrite.cli\nkeyrite.cli.build_parser()\n"
                     f"import {PRODUCTION[command]}")
    assert PRODUCTION[command] in loaded
    assert _offenders(loaded, NOT_IN_PRODUCTION) == []


def test_the_check_sees_an_arrow_that_is_there() -> None:
    loaded = _loaded("import coordinator.rehearsal.rehearse")
    assert "coordinator.rehearsal.rehearse" in _offenders(loaded, NOT_IN_PRODUCTION)
    assert "zmq" in {m.split(".")[0] for m in _loaded("import coordinator.bus")}


class _Started:
    """A keyrite command under `python -X importtime`, running once `ready` is on its stdout;
    on leaving, stopped with SIGTERM, and `imported` lists the modules it loaded."""

    def __init__(self, argv: list[str], ready: str, log: Path) -> None:
        self.argv, self.ready, self.log = argv, ready, log
        self.imported: list[str] = []

    def __enter__(self) -> _Started:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        with open(self.log, "w") as e:
            self.p = subprocess.Popen(
                [sys.executable, "-X", "importtime", "-m", "keyrite.cli", *self.argv],
                stdout=subprocess.PIPE, stderr=e, text=True, cwd=ROOT, env=env)
        assert self.p.stdout is not None
        deadline, line = time.monotonic() + 60, ""
        while time.monotonic() < deadline and self.ready not in line:
            line = self.p.stdout.readline()
            if not line and self.p.poll() is not None:
                break
        if self.ready not in line:
            self.__exit__()
            raise AssertionError(self.log.read_text()[-2000:])
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$",
                                   self.log.read_text(), re.M)


def test_a_staged_coordinator_and_shim_load_none_of_it(tmp_path: Path) -> None:
    from coordinator.live.stage import stage

    s = stage(tmp_path / "c", fixture="small")
    with _Started(["shim", "--config", str(s.shim)], "listening on", tmp_path / "s") as shim, \
            _Started(["coordinator", "--config", str(s.coordinator)], "commands on",
                     tmp_path / "c.txt") as coordinator:
        pass
    assert "signer_shim.server" in shim.imported
    assert _offenders(shim.imported, NOT_IN_PRODUCTION) == []
    assert "coordinator.live.serve" in coordinator.imported
    assert _offenders(coordinator.imported, NOT_IN_PRODUCTION) == []
