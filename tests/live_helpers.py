"""Driving a live ceremony the way the people in the room do: each program in its own tmux window,
keys sent with `send-keys`, what each person sees read with `capture-pane`.

`Room` stages a ceremony (coordinator.live.stage), starts the shim, the coordinator and the
consoles asked for, and offers what a test needs: press keys in someone's console, wait until a
screen shows something, read a screen. Nothing here talks to the coordinator except through a
console on a terminal.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

from coordinator.live.stage import Staged, stage

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]
WIDTH, HEIGHT = 130, 62

HAVE_TMUX = shutil.which("tmux") is not None


class Tmux:
    """One private tmux server (its own socket), one window per program."""

    def __init__(self, socket_dir: Path) -> None:
        self.socket = str(socket_dir / f"tmux-{uuid.uuid4().hex[:8]}")
        self.session = "ceremony"
        self._run("new-session", "-d", "-s", self.session, "-x", str(WIDTH), "-y", str(HEIGHT),
                  "-n", "idle", "sleep 100000")

    def _run(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                             timeout=20)
        if out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def open(self, name: str, argv: list[str], log: Path | None = None) -> None:
        """Run argv in a new window named `name`; the window stays after the program ends (so
        its last screen and exit status can be read)."""
        cmd = shlex.join(argv)
        if log is not None:
            cmd += f" 2>>{shlex.quote(str(log))}"
        cmd = f"cd {shlex.quote(str(ROOT))} && {cmd}; echo EXITED $?; sleep 100000"
        self._run("new-window", "-d", "-t", self.session, "-n", name, "bash", "-c", cmd)

    def close(self, name: str) -> None:
        self._run("kill-window", "-t", f"{self.session}:{name}")

    def keys(self, name: str, *keys: str, literal: bool = False) -> None:
        args = ["send-keys", "-t", f"{self.session}:{name}"]
        if literal:
            args.append("-l")
        self._run(*args, "--", *keys)  # a password may start with "-"

    def screen(self, name: str) -> str:
        return self._run("capture-pane", "-p", "-t", f"{self.session}:{name}")

    def kill_server(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=20)


class Room:
    """A staged ceremony under tmux: shim, coordinator and consoles, each in a window."""

    def __init__(self, tmp: Path, consoles: tuple[str, ...], *,
                 udev: dict[str, str] | None = None, script: Path | None = None,
                 observers: tuple[str, ...] = ()) -> None:
        """`udev`: the environment that shows the coordinator a umockdev testbed; given, the
        coordinator uses USB drives (`drives = "usb"`, mounted under tmp/mnt) instead of the
        staged folders. `script`: another script than the bundled one. `observers`: seats of
        the witness role (WI) enrolled beyond the cast (`enrol_observer`), each with a console
        config, so that a room can have more consoles than the script's cast has people."""
        self.tmp = tmp
        self.staged: Staged = stage(tmp / "ceremony", fixture="small", script_path=script)
        for seat in observers:
            enrol_observer(self.staged, seat)
        self.udev = udev
        self.mounts = tmp / "mnt"
        if udev is not None:
            cfg = self.staged.coordinator.read_text()
            cfg = re.sub(r'^drives = ".*"$', f'drives = "usb"\nmounts = "{self.mounts}"', cfg,
                         flags=re.M)
            self.staged.coordinator.write_text(cfg)
        self.phrases = {k: str(v) for k, v in
                        tomllib.loads((self.staged.live / "passphrases.toml").read_text()).items()}
        self.tmux = Tmux(tmp)
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.tmux.open("shim", [*KEYRITE, "shim", "--config", str(self.staged.shim)],
                       self.logs / "shim.log")
        self.wait("shim", lambda s: "listening on" in s, 60)
        self.start_coordinator()
        for seat in consoles:
            self.start_console(seat)

    def start_coordinator(self, extra_env: dict[str, str] | None = None) -> None:
        """Start the coordinator in its window; `extra_env` adds to its environment (a test's
        `KEYRITE_TEST_CRASH`, say)."""
        pairs = {} if self.udev is None else {k: self.udev[k]
                                              for k in ("LD_PRELOAD", "UMOCKDEV_DIR")}
        pairs.update(extra_env or {})
        env = ["env", *(f"{k}={v}" for k, v in pairs.items())] if pairs else []
        self.tmux.open("coordinator", [*env, *KEYRITE, "coordinator", "--config",
                                       str(self.staged.coordinator)], self.logs / "coordinator.log")
        self.wait("coordinator", lambda s: "commands on" in s, 60)

    def start_console(self, seat: str) -> None:
        log = self.logs / f"console-{seat}.log"
        self.tmux.open(seat, [*KEYRITE, "console", "--config", str(self.staged.consoles[seat]),
                              "--log", str(log)], log)
        self.wait(seat, lambda s: "[ctrl-c] close" in s, 60)

    def close(self) -> None:
        self.tmux.kill_server()

    def pid(self, name: str) -> int:
        """The pid of the program running in window `name` (the coordinator, a console): the
        child of the window's shell (`Tmux.open` runs it under `bash -c`)."""
        out = self.tmux._run("list-panes", "-t", f"{self.tmux.session}:{name}", "-F",
                             "#{pane_pid}")
        shell = int(out.split()[0])
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == shell:
                return int(d)
        raise RuntimeError(f"no program runs in window {name} (its shell is {shell})")

    # --- what a person does and sees -----------------------------------------------------------
    def screen(self, seat: str) -> str:
        return self.tmux.screen(seat)

    def press(self, seat: str, *keys: str) -> None:
        self.tmux.keys(seat, *keys)

    def type(self, seat: str, text: str) -> None:
        self.tmux.keys(seat, text, literal=True)
        self.tmux.keys(seat, "Enter")

    def wait(self, seat: str, ok: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.tmux.screen(seat)
            if ok(text):
                # a capture can fall between two halves of a redraw: trust a screen that still
                # holds a moment later
                time.sleep(0.08)
                again = self.tmux.screen(seat)
                if ok(again):
                    return again
            time.sleep(0.1)
        log = self.logs / ("coordinator.log" if seat == "coordinator" else f"console-{seat}.log")
        tail = log.read_text()[-3000:] if log.exists() else ""
        coord = (self.logs / "coordinator.log").read_text()[-3000:]
        raise AssertionError(f"{seat}'s screen did not show what was expected in {timeout} s:\n"
                             f"{text}\n--- {log.name}:\n{tail}\n--- coordinator.log:\n{coord}")

    def step_of(self, seat: str) -> int | None:
        return _step(self.screen(seat))

    def wait_step(self, seat: str, n: int, timeout: float = 60.0) -> str:
        return self.wait(seat, lambda s: re.search(rf"^Step {n} ", s, re.M) is not None, timeout)

    def asked(self, seat: str) -> list[str]:
        """The keys in this person's bold line: what is asked of them now."""
        return _keys(self.screen(seat))

    def serial(self, drive: str) -> str:
        # the label on the drive, as a person reads it
        from coordinator.folder_drives import FolderDrives

        return FolderDrives(self.staged.root / "drives").info(drive).serial

    def bag(self, label: str) -> str:
        return str(tomllib.loads((self.staged.root / "bags.toml").read_text())[label])


def env_ok() -> bool:
    return HAVE_TMUX and os.name == "posix"


def enrol_observer(staged: Staged, seat: str, role: str = "WI") -> Path:
    """Enrol one more observer seat in a staged ceremony, before its coordinator starts: its
    keys (keyrite.enroll), a roster entry, a passphrase in passphrases.toml and a console
    config like the cast's. The script must allow another of `role` (its `max`)."""
    from ceremony.roster import Officer, Roster, dump_roster, load_roster
    from keyrite.enroll import make_officer

    live = staged.live
    phrase = secrets.token_hex(5)
    e = make_officer(live / "officers" / seat, role=role, name=f"Observer {seat}",
                     passphrase=phrase.encode(), seat=seat, person=f"p-{seat.lower()}",
                     organisation="Independent observer")
    roster = load_roster(live / "roster.toml")
    officers = {**roster.officers, seat: Officer(seat, e.role, e.person, e.name, e.organisation,
                                                 e.signing_key, e.console_key)}
    (live / "roster.toml").write_text(dump_roster(Roster(officers)))
    with (live / "passphrases.toml").open("a") as f:
        f.write(f'{seat} = "{phrase}"\n')
    staged.passphrases[seat] = phrase
    template = next(iter(staged.consoles.values())).read_text()
    text = re.sub(r'^enrolment = ".*"$', f'enrolment = "../officers/{seat}"', template,
                  flags=re.M)
    text = re.sub(r"^also = .*$", "also = []", text, flags=re.M)
    text = re.sub(r"^journal_copy = .*\n", "", text, flags=re.M)
    path = live / "consoles" / f"{seat}.toml"
    path.write_text(text)
    staged.consoles[seat] = path
    return path


def sign_in_observer(room: Room, seat: str, doc: str = "p", digits: str = "4711",
                     by: str = "KGA") -> None:
    """`by` (signed in) signs `seat` in after checking its ID: picked from the list of those
    not signed in by number, the document's type (`doc`: its key on the screen), its last
    digits and `by`'s passphrase, as tests/test_live_tmux.py does by hand."""
    room.press(by, "i")
    listed = room.wait(by, lambda s: re.search(rf"^[ >] (\d+)\) {seat} ", s, re.M) is not None)
    number = re.search(rf"^[ >] (\d+)\) {seat} ", listed, re.M).group(1)  # type: ignore[union-attr]
    room.press(by, *number)
    room.wait(by, lambda s: re.search(rf"^> {number}\) ", s, re.M) is not None)
    room.press(by, "Enter")
    room.wait(by, lambda s: "The ID document you checked for" in s)
    room.press(by, doc)
    room.wait(by, lambda s: re.search(r"^Last digits:", s, re.M) is not None)
    room.type(by, digits)
    room.wait(by, lambda s: re.search(rf"^Passphrase of {by}'s key", s, re.M) is not None)
    room.type(by, room.phrases[by])
    room.wait(by, lambda s: re.search(rf"^│{seat} +\S.*: signed in", s, re.M) is not None)


# --- doing what is asked, as the officers would ------------------------------------------------
class Autopilot:
    """Presses, for each step, the key the bold line offers, and types what the officer would
    (read off the drive, the bag, the clock, the passphrase list). Stops before `until`."""

    def __init__(self, room: Room, seats: tuple[str, ...]) -> None:
        from ceremony.script.load import load_script

        self.room = room
        self.seats = seats
        self.script = load_script(_script_path(room))
        self.password = (room.staged.root / "materials" / "device-backup-password").read_text()

    def current(self) -> int | None:
        return self.room.step_of(self.seats[0])

    def finish(self, timeout: float = 900.0) -> None:
        """Act until the ceremony is over: a console's badge says CEREMONY COMPLETED."""
        self._drive(lambda screen, n: "CEREMONY COMPLETED" in screen, timeout,
                    "the ceremony did not complete")

    def run(self, until: int, timeout: float = 600.0) -> None:
        """Act until step `until` is current. Each decision is read off one screen (its step
        and its bold line together) that held for two captures in a row: never a key pressed
        for a step that has moved on, nor off a capture torn between two redraws (a capture
        with no step line let the autopilot act, and so, once in a full-suite run, approve
        step 33's generation it was told to stop before)."""
        self._drive(lambda screen, n: n is not None and n >= until, timeout,
                    f"the ceremony did not reach step {until}")

    def _drive(self, done: Callable[[str, int | None], bool], timeout: float,
               failed: str) -> None:
        """`run`'s loop, until a screen (with its step) is `done`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for seat in self.seats:
                screen = self.room.screen(seat)
                n = _step(screen)
                if done(screen, n):
                    return
                time.sleep(0.08)
                if n is None or self.room.screen(seat) != screen:
                    continue  # torn, or moving: look again
                keys = [k for k in _keys(screen) if k not in ("i", "z", "r")]
                if keys:
                    before = _you(screen)
                    self.act(seat, keys[0], n)
                    self.room.wait(seat, lambda s, b=before: _you(s) != b or "REFUSED" in s, 120)
                    break
            else:
                time.sleep(0.15)  # the coordinator is working (or waiting for someone)
        raise AssertionError(f"{failed} in {timeout} s")

    def act(self, seat: str, key: str, n: int | None) -> None:
        r = self.room
        if key == "x":
            raise AssertionError(f"step {n} stopped on an exception:\n{r.screen(seat)}")
        r.press(seat, key)
        if key in ("a", "g"):
            return
        started = time.monotonic()

        def prompt_or_gone(s: str) -> bool:
            if re.search(r"^(Passphrase|Value|Password|Seat)", s, re.M):
                return True
            # the view moved on between reading and pressing: the console said so, or the key
            # is no longer offered (its message may have gone with its step); either counts only
            # once the prompt has had time to appear
            return time.monotonic() - started > 1.5 and ("is not possible now" in s
                                                         or key not in _keys(s))

        screen = r.wait(seat, prompt_or_gone, 20)
        if not re.search(r"^(Passphrase|Value|Password|Seat)", screen, re.M):
            return
        if key == "s":  # signing in: each of the person's seats signs with its own key
            self.passphrases(seat, screen)
        elif key == "p" or key == "o":
            m = re.search(r"Passphrase of (\w+)'s key", screen)
            assert m, screen
            r.type(seat, r.phrases[m.group(1)])
        elif key == "w":  # typed twice: the console sends it once both entries are the same
            r.type(seat, self.password.strip())
            r.wait(seat, lambda s: re.search(r"^Confirm password:", s, re.M) is not None, 20)
            r.type(seat, self.password.strip())
        elif key == "v":
            value = self.value(n, screen)
            if value is None:  # filled in by the console (the date and time): Enter confirms
                r.press(seat, "Enter")
            else:
                r.type(seat, value)
            if "bag-serial" in screen and self.custodian_signs(screen):
                # a custodian then signs for the bag (a bag's serial recorded is not signed)
                signing = r.wait(seat, lambda s: "Passphrase of" in s or "REFUSED" in s, 20)
                m = re.search(r"Passphrase of (\w+)'s key", signing)
                if m:
                    r.type(seat, r.phrases[m.group(1)])
        else:
            raise AssertionError(f"the autopilot does not answer [{key}]")

    def custodian_signs(self, screen: str) -> bool:
        """Whether the value the prompt asks for is a seal's or a handover's bag serial, which
        its custodian signs for, rather than a serial the KGA records."""
        m = re.search(r"Enter the value for step (\d+)", screen)
        return m is None or self.script.step(int(m.group(1))).action in ("seal", "handover")

    def passphrases(self, seat: str, screen: str) -> None:
        """Type the passphrase each "Passphrase of SEAT's key" prompt asks for, one after the
        other (a sign-in for several seats asks for each), until none is asked."""
        r, typed = self.room, set()

        def asked(s: str) -> str | None:
            m = re.search(r"^Passphrase of (\w+)'s key", s, re.M)
            return m.group(1) if m else None

        while (who := asked(screen)) is not None and who not in typed:
            typed.add(who)
            r.type(seat, r.phrases[who])
            screen = r.wait(seat, lambda s, done=frozenset(typed): asked(s) not in done, 20)

    def value(self, n: int | None, screen: str) -> str | None:
        """What the prompt asks for (its own step number: the step line may lag a redraw); None
        where the console fills it in (the date and time, from its clock)."""
        m = re.search(r"Enter the value for step (\d+) \(([\w-]+)\)", screen)
        assert m, screen
        step = self.script.step(int(m.group(1)))
        fmt = m.group(2)
        if fmt == "datetime":
            assert re.search(r"^Value: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", screen, re.M), screen
            return None
        if fmt == "usb-serial" and step.drive:
            return self.room.serial(step.drive)
        if fmt == "bag-serial" and step.bag:
            return self.room.bag(step.bag)
        if fmt == "sha256":  # a digest the prompt shows (the transcript's), read aloud
            shown = re.search(r"^sha256 ((?:\s*[0-9a-f]{2}:?){32})", screen, re.M)
            if shown:
                return "".join(re.findall(r"[0-9a-f]{2}", shown.group(1)))
        return "noted"


def _script_path(room: Room) -> Path:
    text = room.staged.coordinator.read_text()
    return Path(tomllib.loads(text)["coordinator"]["script"])


def _step(screen: str) -> int | None:
    m = re.search(r"^Step (\d+) ", screen, re.M)
    return int(m.group(1)) if m else None


def _keys(screen: str) -> list[str]:
    m = re.search(r"^YOU: (.*)$", screen, re.M)
    return re.findall(r"\[(\w)\]", m.group(1)) if m else []


def _you(screen: str) -> str:
    """The step line and the bold line: they change when what is asked of someone changes."""
    return " | ".join(re.findall(r"^(?:Step \d+ .*|YOU: .*)$", screen, re.M))


# --- a window of another size, the coordinator stopped ----------------------------------------
def resize(room: Room, seat: str, width: int, height: int) -> None:
    """Make `seat`'s terminal `width` x `height` (a laptop's 80x24, a projector's): tmux sends
    the console SIGWINCH, and it redraws at that size."""
    room.tmux._run("resize-window", "-t", f"{room.tmux.session}:{seat}", "-x", str(width),
                   "-y", str(height))


def stop_coordinator(room: Room) -> None:
    """Stop the coordinator as its operator does (ctrl-c: SIGINT), wait for it to exit 0, and
    close its window (`Room.start_coordinator` opens a new one)."""
    room.tmux.keys("coordinator", "C-c")
    room.wait("coordinator", lambda s: "EXITED 0" in s, 30)
    room.tmux.close("coordinator")


def window_size(room: Room, seat: str) -> tuple[int, int]:
    """The columns and rows of `seat`'s terminal."""
    out = room.tmux._run("display-message", "-p", "-t", f"{room.tmux.session}:{seat}",
                         "#{window_width} #{window_height}")
    width, height = out.split()
    return int(width), int(height)


def coordinator_started(config: Path, log: Path, timeout: float = 60.0) -> tuple[str, str]:
    """Start `keyrite coordinator --config CONFIG`, wait until it says its bus is up ("commands
    on") or stops, stop it: (what it printed, what it logged to `log`)."""
    with log.open("w") as err:
        p = subprocess.Popen([sys.executable, "-m", "keyrite.cli", "coordinator", "--config",
                              str(config)], stdout=subprocess.PIPE, stderr=err, text=True,
                             cwd=Path(__file__).resolve().parent.parent, start_new_session=True)
    assert p.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and "commands on" not in seen:
        ready, _, _ = select.select([p.stdout], [], [], 1)
        if ready:
            line = p.stdout.readline()
            if not line:
                break
            seen += line
        elif p.poll() is not None:
            break
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
    p.wait(30)
    p.stdout.close()
    return seen, log.read_text()
