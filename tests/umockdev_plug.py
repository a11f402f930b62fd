"""A umockdev testbed driven over stdin, for tests/umockdev_helpers.py.

Runs on Debian's /usr/bin/python3 (which has `gi` and the UMockdev typelib; the venv has
neither) under LD_PRELOAD=libumockdev-preload.so.0. It builds a `UMockdev.Testbed`, prints
`root <dir>` and then answers one command a line, one reply a line:

    disk <name> <bus> <serial> <vendor> <model> [<partition count> [<node> ...]]
                                                                   -> ok <disk syspath>
    unplug <disk syspath>                                          -> ok
    quit

`disk` adds a SCSI disk (`sdb`, ...) with its partitions (`sdb1`, ...) below a USB mass-storage
device when <bus> is `usb`, or below an ATA controller otherwise; each add emits its own udev
`add` event, disk first, as the kernel does. `unplug` emits `remove` for the partitions, then
the disk, then removes them from the testbed. Values are single words (tests choose them).

A partition given a <node> (a real block device such as /dev/loop3) has that as its device node
instead of a fake one in the testbed: the tool mounts a real filesystem on a drive udev reports
as plugged into a USB port.
"""

from __future__ import annotations

import glob
import os
import posixpath
import sys

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

_count = 0


def _disk(
    bed: UMockdev.Testbed,
    name: str,
    bus: str,
    serial: str,
    vendor: str,
    model: str,
    parts: int,
    nodes: list[str],
) -> str:
    global _count
    _count += 1
    n = _count
    if bus == "usb":
        host = f"/devices/pci0000:00/0000:00:14.0/usb1/1-{n}/1-{n}:1.0/host{n}"
        parents = (
            f"P: /devices/pci0000:00/0000:00:14.0/usb1/1-{n}/1-{n}:1.0\n"
            "E: SUBSYSTEM=usb\nE: DEVTYPE=usb_interface\nE: DRIVER=usb-storage\n\n"
            f"P: /devices/pci0000:00/0000:00:14.0/usb1/1-{n}\n"
            "E: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\n"
            f"A: serial={serial}\nA: manufacturer={vendor}\nA: product={model}\n\n"
        )
    else:
        host = f"/devices/pci0000:00/0000:00:1f.2/ata{n}/host{n}"
        parents = ""
    disk = f"{host}/target{n}:0:0/{n}:0:0:0/block/{name}"
    props = (
        f"E: ID_BUS={bus}\nE: ID_SERIAL_SHORT={serial}\nE: ID_SERIAL={vendor}_{model}_{serial}\n"
        f"E: ID_MODEL={model}\n"
        + (
            f"E: ID_VENDOR={vendor}\nE: ID_VENDOR_ID=abcd\nE: ID_USB_DRIVER=usb-storage\n"
            if bus == "usb"
            else ""
        )
    )
    bed.add_from_string(
        f"P: {disk}\nN: {name}\nE: DEVNAME=/dev/{name}\nE: DEVTYPE=disk\nE: SUBSYSTEM=block\n"
        f"{props}A: size=15633408\nA: removable=1\n\n"
        f"P: {host}/target{n}:0:0/{n}:0:0:0\nE: SUBSYSTEM=scsi\nE: DEVTYPE=scsi_device\n"
        f"A: vendor={vendor}\nA: model={model}\n\n" + parents
    )
    for i in range(1, parts + 1):
        node = nodes[i - 1] if i <= len(nodes) else None
        # no N: line for a real node: the testbed makes no fake file, the real device is opened
        dev = f"E: DEVNAME={node}\n" if node else f"N: {name}{i}\nE: DEVNAME=/dev/{name}{i}\n"
        bed.add_from_string(
            f"P: {disk}/{name}{i}\n{dev}"
            f"E: DEVTYPE=partition\nE: SUBSYSTEM=block\n{props}E: ID_FS_TYPE=vfat\n"
            f"A: partition={i}\nA: size=15631360\n"
        )
    return "/sys" + disk


def _unplug(bed: UMockdev.Testbed, disk: str) -> None:
    root = bed.get_root_dir()
    parts = sorted(
        p
        for p in os.listdir(root + disk)
        if os.path.exists(os.path.join(root + disk, p, "partition"))
    )
    for p in parts:
        bed.uevent(f"{disk}/{p}", "remove")
    bed.uevent(disk, "remove")
    for p in parts:
        bed.remove_device(f"{disk}/{p}")
    bed.remove_device(disk)
    # The device is gone with its parents, as on a real unplug, so that its name (sdb) can come
    # back: remove_device leaves the parents, /sys/block/<name> links and the /dev nodes.
    names = [posixpath.basename(disk), *parts]
    scsi = posixpath.dirname(posixpath.dirname(disk))  # .../<h:c:t:l>/block/<name>
    for parent in (scsi, *_usb_ancestors(scsi)):
        if os.path.isdir(root + parent):
            bed.remove_device(parent)
    for name in names:
        for left in (
            f"{root}/sys/block/{name}",
            f"{root}/sys/class/block/{name}",
            f"{root}/dev/{name}",
        ):
            if os.path.lexists(left):
                os.unlink(left)
    for bus in glob.glob(f"{root}/sys/bus/*/devices/*"):
        if os.path.islink(bus) and not os.path.exists(bus):
            os.unlink(bus)


def _usb_ancestors(scsi: str) -> list[str]:
    """The USB interface and device above a USB disk's SCSI device (none for ATA)."""
    parts = scsi.split("/")
    if "usb1" not in parts:
        return []
    i = parts.index("usb1")
    return ["/".join(parts[: i + 3]), "/".join(parts[: i + 2])]  # interface, then device


def main() -> int:
    bed = UMockdev.Testbed.new()
    print("root", bed.get_root_dir(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                break
            if words[0] == "disk":
                name, bus, serial, vendor, model = words[1:6]
                parts = int(words[6]) if len(words) > 6 else 1
                nodes = words[7:]
                print("ok", _disk(bed, name, bus, serial, vendor, model, parts, nodes), flush=True)
            elif words[0] == "unplug":
                _unplug(bed, words[1])
                print("ok", flush=True)
            else:
                print("error unknown command", words[0], flush=True)
        except Exception as e:  # reported to the test, which fails with it
            print("error", type(e).__name__, str(e).replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
