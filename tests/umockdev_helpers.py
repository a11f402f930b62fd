"""Fake USB drives for tests: a umockdev testbed, and a UsbWatch that sees it.

umockdev fakes sysfs, /dev and udev's netlink uevents for processes that run with
`LD_PRELOAD=libumockdev-preload.so.0` and `UMOCKDEV_DIR` set to a testbed's root. Two things make
it awkward from pytest, hence two child processes:

- The testbed is built with `UMockdev.Testbed` through GObject introspection (`gi`), which
  Debian's /usr/bin/python3 has (python3-gi, gir1.2-umockdev-1.0) and the venv does not. So
  `MockUdev` runs tests/umockdev_plug.py on the system python, reads the testbed's root from it,
  and plugs and unplugs drives by writing commands to it.
- The preload library must be loaded when a process starts, and pytest itself is not started
  with it. So `WatchProbe` runs `python -m tests.umockdev_helpers` (this file, the venv's python,
  the real `coordinator.usb.watch`) with the preload and `UMOCKDEV_DIR`; it prints every
  DriveEvent as a JSON line and answers `present`, and the test asserts on the values read back.

Both children are killed when their context manager exits, even on failure. The same recipe
runs the live coordinator against fake drives: start the plug helper, then start the
coordinator with `MockUdev.env()`.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
PRELOAD = "libumockdev-preload.so.0"
PLUG = Path(__file__).resolve().parent / "umockdev_plug.py"
PACKAGES = "umockdev gir1.2-umockdev-1.0 python3-gi"

_missing: str | None = None
_checked = False


def umockdev_missing() -> str | None:
    """Why the umockdev tests cannot run here (what is missing), or None if they can."""
    global _missing, _checked
    if not _checked:
        _missing, _checked = _check(), True
    return _missing


def _check() -> str | None:
    hint = f"(Debian: apt-get install {PACKAGES}; dev/setup.sh should install them)"
    if not sys.platform.startswith("linux"):
        return "umockdev needs Linux"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing: the umockdev testbed helper runs on it {hint}"
    libs = glob.glob(f"/usr/lib/*/{PRELOAD}") + glob.glob(f"/usr/lib/{PRELOAD}")
    if not libs:
        return f"{PRELOAD} is not installed (package libumockdev0) {hint}"
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('UMockdev', '1.0'); "
            "from gi.repository import UMockdev; UMockdev.Testbed",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SYSTEM_PYTHON} cannot import UMockdev through gi: {last} {hint}"
    return None


def _preloaded(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env["LD_PRELOAD"] = ":".join(p for p in (PRELOAD, env.get("LD_PRELOAD", "")) if p)
    return env


class _Child:
    """A child process spoken to in lines; its stdout is read by a thread into a queue."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def line(self, timeout: float) -> str | None:
        """The next line within `timeout` seconds, or None; a dead child is an error."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self.lines.put(None)
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"{self.name} exited ({self.proc.returncode}):\n{''.join(self._stderr)[-3000:]}"
            )
        return line

    def close(self) -> None:
        try:
            self.send("quit")
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)


class MockUdev:
    """A umockdev testbed in a helper process; `plug` and `unplug` fake USB (or ATA) disks."""

    def __init__(self) -> None:
        self._child = _Child(
            [SYSTEM_PYTHON, str(PLUG)], _preloaded(dict(os.environ)), "umockdev_plug.py"
        )
        try:
            first = self._child.line(30)
            if first is None or not first.startswith("root "):
                raise AssertionError(f"umockdev_plug.py did not print its root: {first!r}")
        except BaseException:
            self._child.close()
            raise
        self.root = first.split(" ", 1)[1]
        # The testbed answers ioctls on every /dev node it does not emulate through a default
        # handler, with ENOTTY: a real loop device's BLKFLSBUF too. Without its socket they
        # reach the kernel (the fake disks need no ioctl).
        default = Path(self.root) / "ioctl" / "_default"
        if default.exists():
            default.unlink()

    def __enter__(self) -> MockUdev:
        return self

    def __exit__(self, *exc: object) -> None:
        self._child.close()
        # The testbed removes its root when the helper exits cleanly; not if it crashed.
        if Path(self.root).name.startswith("umockdev.") and os.path.isdir(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for a process that should see this testbed instead of the host."""
        env = _preloaded(dict(os.environ if base is None else base))
        env["UMOCKDEV_DIR"] = self.root
        return env

    def _ask(self, line: str) -> str:
        self._child.send(line)
        reply = self._child.line(30)
        if reply is None or not reply.startswith("ok"):
            raise AssertionError(f"umockdev_plug.py: {line!r} -> {reply!r}")
        return reply[3:]

    def plug(
        self,
        name: str,
        serial: str,
        vendor: str = "Kingston",
        model: str = "DataTraveler",
        *,
        bus: str = "usb",
        partitions: int = 1,
        nodes: tuple[str, ...] = (),
    ) -> str:
        """Add disk /dev/<name> (and <name>1...), emitting udev `add`s; returns its syspath.
        `nodes` gives partitions real device nodes (a loop device holding a filesystem)."""
        words = (name, bus, serial, vendor, model, *nodes)
        if any(not w or any(c.isspace() for c in w) for w in words):
            raise ValueError(f"plug() values must be single words: {words}")
        return self._ask(f"disk {' '.join(words[:5])} {partitions} {' '.join(nodes)}".rstrip())

    def unplug(self, syspath: str) -> None:
        """Emit `remove` for the disk's partitions and the disk, then drop them."""
        self._ask(f"unplug {syspath}")


def drive_from_json(data: dict[str, Any]) -> Any:
    from coordinator.usb.watch import UsbDrive

    return UsbDrive(**{**data, "partitions": tuple(data["partitions"])})


class WatchProbe:
    """A UsbWatch in a child process that sees `bed`; events and `present()` come back as values.

    mode "poll" drives UsbWatch.poll() (the thread API), mode "trio" UsbWatch.events().
    """

    def __init__(self, bed: MockUdev, mode: str = "poll", settle: float = 0.3) -> None:
        argv = [sys.executable, "-m", "tests.umockdev_helpers", mode, str(settle)]
        env = bed.env()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        self._child = _Child(argv, env, f"WatchProbe({mode})")
        self._events: list[Any] = []
        try:
            self.initial = self._present_reply(30)
        except BaseException:
            self._child.close()
            raise

    def __enter__(self) -> WatchProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self._child.close()

    def _next(self, timeout: float) -> dict[str, Any] | None:
        line = self._child.line(timeout)
        return None if line is None else json.loads(line)

    def _present_reply(self, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._next(left)
            if msg is None:
                break
            if "present" in msg:
                return [drive_from_json(d) for d in msg["present"]]
            self._events.append(self._event(msg))
        raise AssertionError(f"no reply to 'present' within {timeout} s")

    @staticmethod
    def _event(msg: dict[str, Any]) -> Any:
        from coordinator.usb.watch import DriveEvent

        return DriveEvent(
            action=msg["event"]["action"], drive=drive_from_json(msg["event"]["drive"])
        )

    def present(self) -> list[Any]:
        """UsbWatch.present() in the probe, now."""
        self._child.send("present")
        return self._present_reply(10)

    def event(self, timeout: float = 5.0) -> Any:
        """The next DriveEvent, or None if there is none within `timeout` seconds."""
        if self._events:
            return self._events.pop(0)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._next(left)
            if msg is None:
                return None
            if "event" in msg:
                return self._event(msg)
        return None


# --- the probe itself: runs in the child, under the preload, with UMOCKDEV_DIR set ---------


def _say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _event_json(event: Any) -> dict[str, Any]:
    return {"event": {"action": event.action, "drive": asdict(event.drive)}}


def _probe_poll(settle: float) -> int:
    from coordinator.usb.watch import UsbWatch

    watch = UsbWatch(settle=settle)
    _say({"present": [asdict(d) for d in watch.present()]})
    buffer = b""
    while True:
        event = watch.poll(0.05)
        if event is not None:
            _say(_event_json(event))
        while select.select([0], [], [], 0)[0]:
            data = os.read(0, 4096)
            if not data:
                return 0
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip() == b"quit":
                    return 0
                if line.strip() == b"present":
                    _say({"present": [asdict(d) for d in watch.present()]})


def _probe_trio(settle: float) -> int:
    import trio

    from coordinator.usb.watch import UsbWatch

    async def main() -> None:
        watch = UsbWatch(settle=settle)
        _say({"present": [asdict(d) for d in watch.present()]})

        async def forward() -> None:
            async for event in watch.events():
                _say(_event_json(event))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buffer = b""
            while True:
                data = await stdin.receive_some()
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                if b"quit" in (line.strip() for line in lines):
                    break
                for line in lines:
                    if line.strip() == b"present":
                        _say({"present": [asdict(d) for d in watch.present()]})
            nursery.cancel_scope.cancel()

    trio.run(main)
    return 0


if __name__ == "__main__":
    mode, settle = sys.argv[1], float(sys.argv[2])
    sys.exit(_probe_trio(settle) if mode == "trio" else _probe_poll(settle))
