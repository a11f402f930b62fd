"""`UsbDrives`: the coordinator's `Drives` interface on real USB flash drives.

udev (`watch.UsbWatch`) says which drive is plugged in; `blockfs.BlockDrive` mounts its first
partition privately, writes and reads it back from the device. The rehearsal keeps its folder
drives (`coordinator.folder_drives.FolderDrives`) behind the same interface.

A `drive.insert` step waits here until a drive is plugged in that it may take: not bound to
another label, not ejected earlier while still in the port. Where the script declares the
label's serial, a drive with any other serial is refused (a `DriveNotice` every console shows)
and the step keeps waiting for the right one. Otherwise the serial the KGA recorded picks the
drive when several are plugged in, and the machine's `verify` step compares them, as the seed's
SA did: a mismatch is an exception the KGA decides (a typo in the record may be accepted with a
reason; a wrong drive is swapped and the step retried).

Binding a drive mounts nothing: the drive is mounted at the first copy, read or listing, after
its serial step, so a drive that turns out to be the wrong one has had nothing written to it,
not even the mount's own metadata. The bound drive stays the label's until `eject`.

`start()` runs a watcher thread that applies udev's events as they come and tells the listener
at once (plugged in, removed, refused): a drive pulled out during a step is on every console and
in the journal straight away, and the next touch of that label fails with the drive named and
nothing recorded. Plugging the same drive back in (same serial) binds it again at once, so the
step can be retried; another drive is taken for that label only at a `drive.insert` or serial
step, where its serial is checked again. Without `start()` (tests), pending events are applied
at each call instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from coordinator.drives import DriveInfo, with_sums
from coordinator.usb.blockfs import BlockDrive, DriveError
from coordinator.usb.watch import DriveEvent, DriveTable, UsbDrive, normalise_serial
from keyrite.exits import Failure

WAIT_SECONDS = 30 * 60  # how long a drive.insert step waits for a drive to be plugged in
POLL_SECONDS = 0.5  # the watcher thread looks at its stop flag this often
Progress = Callable[[int, int, str], None]


class Watch(Protocol):
    def present(self) -> list[UsbDrive]: ...

    def poll(self, timeout: float) -> DriveEvent | None: ...


@dataclass(frozen=True)
class DriveNotice:
    """Something about a drive every console should see now, and the journal keep."""

    what: Literal["present", "plugged", "removed", "refused"]
    drive: UsbDrive
    label: str | None = None  # the label it is (or was) bound to, or was refused for
    reason: str | None = None  # refused: why

    def to_record(self) -> dict[str, object]:
        d = self.drive
        rec: dict[str, object] = {"event": self.what, "serial": d.serial, "vendor": d.vendor,
                                  "model": d.model, "device": d.devnode}
        if self.label is not None:
            rec["label"] = self.label
        if self.reason is not None:
            rec["reason"] = self.reason
        return rec


Listener = Callable[[DriveNotice], None]


class UsbDrives:
    """Thread-safe: the steps' work calls it from worker threads, the watcher from its own."""

    def __init__(self, watch: Watch, mount_root: Path, expected: Mapping[str, str | None], *,
                 wait_seconds: float = WAIT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.watch = watch
        self.mount_root = Path(mount_root)
        self.expected = dict(expected)
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.table = DriveTable(watch.present())
        self.bound: dict[str, tuple[UsbDrive, BlockDrive]] = {}
        self.removed: dict[str, tuple[UsbDrive, BlockDrive]] = {}  # label -> pulled while bound
        self.spent: dict[str, str] = {}  # syspath -> label: ejected, still in the port
        self.refused: dict[str, tuple[str, str]] = {}  # syspath -> (label, why): told once
        self.listener: Listener | None = None
        self._cond = threading.Condition()  # guards the state above; signalled on each event
        self._binding = threading.Lock()  # held while a drive is chosen and mounted
        self._thread: threading.Thread | None = None
        self._stop = False

    # --- what udev says ----------------------------------------------------------------------
    def start(self, listener: Listener) -> None:
        """Watch udev in a thread from now on; `listener` hears every notice (from any thread).
        The drives already plugged in are told first, as `present`."""
        with self._cond:
            self.listener = listener
            present = self.table.present()
        for drive in present:
            listener(DriveNotice("present", drive))
        self._thread = threading.Thread(target=self._watch_forever, name="keyrite-udev",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the watcher; a step waiting for a drive gives up (the coordinator is stopping)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _watch_forever(self) -> None:
        while not self._stop:
            event = self.watch.poll(POLL_SECONDS)
            if event is not None:
                self._apply(event)

    def _apply(self, event: DriveEvent) -> None:
        with self._cond:
            self.table.apply(event)
            label = None
            if event.action == "added":  # a drive pulled out while bound, plugged back in?
                serial = normalise_serial(event.drive.serial)
                label = next((name for name, (was, _) in self.removed.items()
                              if serial and normalise_serial(was.serial) == serial), None)
            if event.action == "removed":
                path = event.drive.syspath
                self.spent.pop(path, None)
                self.refused.pop(path, None)
                for name, (drive, block) in list(self.bound.items()):
                    if drive.syspath == path:
                        self.removed[name] = (drive, block)
                        del self.bound[name]
                        label = name
            self._cond.notify_all()
        if event.action == "removed":
            self._tell(DriveNotice("removed", event.drive, label))
            return
        if label is None:
            self._tell(DriveNotice("plugged", event.drive))
            return
        try:  # taken back at once (never waiting here), then told: every console sees it
            self.wait_for(label, event.drive.serial, wait=False)
        except Failure as e:
            self._tell(DriveNotice("plugged", event.drive))
            self._tell(DriveNotice("refused", event.drive, label, str(e)))
        else:
            self._tell(DriveNotice("plugged", event.drive, label))

    def _tell(self, notice: DriveNotice) -> None:
        if self.listener is not None:
            self.listener(notice)

    def _drain(self, timeout: float = 0.0) -> None:
        """Without the watcher thread: apply the pending events here, waiting up to `timeout`
        for the first."""
        if self._thread is not None:
            with self._cond:
                if timeout > 0 and not self._stop:
                    self._cond.wait(timeout)
            return
        while (event := self.watch.poll(timeout)) is not None:
            timeout = 0.0
            self._apply(event)

    def seen(self) -> dict[str, str]:
        """Labels whose drive is plugged in now, with its serial (for the consoles' panel)."""
        self._drain()
        with self._cond:
            return {label: d.serial for label, (d, _) in self.bound.items()}

    def present(self) -> list[tuple[UsbDrive, str | None]]:
        """Every USB drive plugged in now, with the label it is bound to (None if none)."""
        self._drain()
        with self._cond:
            labels = {d.syspath: label for label, (d, _) in self.bound.items()}
            return [(d, labels.get(d.syspath)) for d in self.table.present()]

    # --- the Drives interface ----------------------------------------------------------------
    def wait_for(self, label: str, expected: str | None = None, *,
                 wait: bool = True) -> DriveInfo:
        """The drive for `label`, bound (not yet mounted); waits for it to be plugged in (with
        `wait=False`, only takes one plugged in now). `expected` is the serial the KGA
        recorded: it picks among several drives, and the machine's verify step checks it; only
        the script's serial refuses a drive."""
        deadline = self.clock() + (self.wait_seconds if wait else 0.0)
        while True:
            self._drain()
            if self._stop:
                raise Failure(f"the coordinator is stopping: drive {label} was not bound")
            with self._binding:  # one chooser at a time: never two labels on one drive
                with self._cond:
                    if label in self.bound:
                        return self._info(label)
                    drive, refusals = self._choose(label, expected)
                info = None if drive is None else self._bind(label, drive)
            for notice in refusals:
                self._tell(notice)
            if info is not None:
                return info
            left = deadline - self.clock()
            if left <= 0:
                why = [r for lab, r in self.refused.values() if lab == label]
                more = f"; refused: {why[-1]}" if why else ""
                raise Failure(f"no flash drive was plugged in for {label} within "
                              f"{self.wait_seconds / 60:.0f} minutes{more}")
            self._drain(min(left, 1.0))

    def _choose(self, label: str, prefer: str | None
                ) -> tuple[UsbDrive | None, list[DriveNotice]]:
        """The free drive to bind (or None), and refusals to tell (each drive once a label).
        Preferred: the drive this label had before it was pulled out, then the recorded
        serial; refused: any drive whose serial is not the script's for this label."""
        taken = {d.syspath for d, _ in self.bound.values()}
        taken |= {path for path, was in self.spent.items() if was != label}
        free = [d for d in self.table.present() if d.syspath not in taken]
        wants = [self.removed[label][0].serial] if label in self.removed else []
        wants += [prefer] if prefer else []
        for want in map(normalise_serial, wants):
            free.sort(key=lambda d, w=want: normalise_serial(d.serial) != w)  # stable
        refusals = []
        for drive in free:
            reason = self.table.check(label, self.expected.get(label), drive)
            if reason is None:
                return drive, refusals
            if self.refused.get(drive.syspath, ("", ""))[0] != label:
                self.refused[drive.syspath] = (label, reason)
                refusals.append(DriveNotice("refused", drive, label, reason))
        return None, refusals

    def _bind(self, label: str, drive: UsbDrive) -> DriveInfo:
        if not drive.partitions:
            raise Failure(f"the drive plugged in for {label} (serial {drive.serial}) has no "
                          "partition: format it before the ceremony")
        stale = self.removed.pop(label, None)
        if stale is not None:  # the mount left behind when it was pulled out
            try:
                stale[1].unmount()
            except (DriveError, OSError) as e:
                raise _failure(label, e) from None
        block = BlockDrive(drive.partitions[0], self.mount_root, label)
        with self._cond:
            self.bound[label] = (drive, block)
            self.refused.pop(drive.syspath, None)
            self.spent.pop(drive.syspath, None)
            return self._info(label)

    def _info(self, label: str) -> DriveInfo:
        drive, block = self.bound[label]
        return DriveInfo(label, drive.serial, drive.vendor, drive.model, str(block.mountpoint))

    def _block(self, label: str) -> BlockDrive:
        """The label's drive, mounted (at its first use since it was bound)."""
        block = self._bound_block(label)
        with self._binding:
            try:
                block.mount()  # nothing when it is mounted already
            except (DriveError, OSError) as e:
                raise _failure(label, e) from None
        return block

    def _bound_block(self, label: str) -> BlockDrive:
        """The label's drive, as bound (mounted or not)."""
        self._drain()
        with self._cond:
            bound = self.bound.get(label)
            pulled = self.removed.get(label)
        if bound is None and pulled is not None:  # plugged back in since? then take it again
            if not any(normalise_serial(d.serial) == normalise_serial(pulled[0].serial)
                       for d in self.table.present()):
                raise Failure(f"drive {label} (serial {pulled[0].serial}) was removed; plug "
                              "it in again and retry the step")
            self.wait_for(label, pulled[0].serial)
            bound = self.bound.get(label)
        if bound is None:
            raise Failure(f"drive {label} is not plugged in (no drive.insert step bound it)")
        return bound[1]

    def copy(self, label: str, files: Iterable[tuple[str, bytes]],
             progress: Progress | None = None) -> list[dict[str, object]]:
        """Write the files and their sums in one batch (`with_sums`: renamed into place together,
        or none), then read back from the device: the copy counts only if every digest holds
        and every `.sha256sum` on the drive checks."""
        block = self._block(label)
        try:
            written = block.copy(list(with_sums(files)), progress)
            check = block.verify({str(w["name"]): str(w["sha256"]) for w in written})
        except (DriveError, OSError) as e:
            self._drain()
            raise _failure(label, e) from None
        if not check["ok"]:
            raise Failure(str(check["detail"]))
        return written

    def verify(self, label: str) -> dict[str, object]:
        try:
            return self._block(label).verify({})
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None

    def read(self, label: str, name: str) -> bytes:
        try:
            return self._block(label).read(name)
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None

    def list(self, label: str) -> list[str]:
        try:
            return self._block(label).list()
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None

    def eject(self, label: str) -> None:
        block = self._bound_block(label)  # never mounted just to be unmounted
        try:
            block.eject()
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None
        with self._cond:
            drive, _ = self.bound.pop(label)
            self.spent[drive.syspath] = label


def _failure(label: str, e: BaseException) -> Failure:
    """DriveError messages are already the officer's; a bare OSError from a failing drive is
    said in the same terms."""
    if isinstance(e, DriveError):
        return Failure(str(e))
    return Failure(f"drive {label} failed or was removed ({e.strerror or e}); nothing was "
                   "recorded for this step: plug it in again, or use another drive, and retry")
