"""USB drives plugged in and removed: the pure parts directly, UsbWatch against umockdev.

The umockdev tests fake USB mass-storage disks (with partitions) and an ATA disk in a testbed
(tests/umockdev_helpers.py) and run the real UsbWatch in a child process that sees it, through
both its thread API (`poll`) and its trio API (`events`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.usb import DriveEvent, DriveTable, UsbDrive, drive_from_properties, usb_drive
from coordinator.usb.watch import _Fold, normalise_serial
from tests.umockdev_helpers import MockUdev, WatchProbe, umockdev_missing

DISK = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host1/target1:0:0/1:0:0:0/block/sdb"
DISK2 = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host2/target2:0:0/2:0:0:0/block/sdc"


def usb_props(devname: str = "/dev/sdb", **extra: str) -> dict[str, str]:
    return {
        "SUBSYSTEM": "block",
        "DEVTYPE": "disk",
        "ID_BUS": "usb",
        "DEVNAME": devname,
        "ID_SERIAL_SHORT": "AA0011",
        "ID_VENDOR": "Kingston",
        "ID_VENDOR_ID": "0951",
        "ID_MODEL": "DataTraveler_3.0",
        **extra,
    }


def drive(serial: str = "AA0011", devnode: str = "/dev/sdb", syspath: str = DISK) -> UsbDrive:
    return UsbDrive(
        serial=serial,
        vendor="Kingston",
        model="DataTraveler_3.0",
        devnode=devnode,
        partitions=(devnode + "1",),
        syspath=syspath,
    )


# --- pure: udev properties to UsbDrive --------------------------------------------------------


def test_usb_disk_properties_make_a_drive_with_sorted_partitions() -> None:
    got = drive_from_properties(usb_props(), syspath=DISK, partitions=["/dev/sdb2", "/dev/sdb1"])
    assert got == UsbDrive(
        serial="AA0011",
        vendor="Kingston",
        model="DataTraveler_3.0",
        devnode="/dev/sdb",
        partitions=("/dev/sdb1", "/dev/sdb2"),
        syspath=DISK,
    )


def test_vendor_falls_back_to_the_vendor_id() -> None:
    props = usb_props()
    del props["ID_VENDOR"]
    assert drive_from_properties(props).vendor == "0951"  # type: ignore[union-attr]


def test_serial_falls_back_to_the_usb_serial_then_to_none() -> None:
    props = usb_props(ID_USB_SERIAL_SHORT="USB0042")
    del props["ID_SERIAL_SHORT"]
    assert drive_from_properties(props).serial == "USB0042"  # type: ignore[union-attr]
    del props["ID_USB_SERIAL_SHORT"]
    assert drive_from_properties(props).serial == ""  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change",
    [
        {"ID_BUS": "ata"},
        {"ID_BUS": "scsi"},
        {"DEVTYPE": "partition"},
        {"SUBSYSTEM": "usb"},
        {"DEVNAME": ""},
    ],
)
def test_anything_but_a_whole_usb_disk_is_not_a_drive(change: dict[str, str]) -> None:
    assert drive_from_properties(usb_props(**change)) is None


def test_serials_are_compared_uppercase_alphanumerics_only() -> None:
    assert normalise_serial(" aa-00:11 ") == "AA0011"
    assert normalise_serial("AA0011") == normalise_serial("aa_0011")
    assert normalise_serial("AA0011") != normalise_serial("AA0012")


def test_usb_drive_reads_a_udev_device_and_its_partition_children() -> None:
    def dev(props: dict[str, str], path: str, children: list[Any] = ()) -> Any:  # type: ignore[assignment]
        return SimpleNamespace(
            properties=props,
            subsystem=props["SUBSYSTEM"],
            device_type=props["DEVTYPE"],
            device_node=props["DEVNAME"] or None,
            sys_path=path,
            children=children,
        )

    parts = [dev(usb_props(f"/dev/sdb{i}", DEVTYPE="partition"), f"{DISK}/sdb{i}") for i in (2, 1)]
    scsi = dev({"SUBSYSTEM": "scsi_generic", "DEVTYPE": "", "DEVNAME": "/dev/sg1"}, DISK + "/x")
    assert usb_drive(dev(usb_props(), DISK, [*parts, scsi])) == replace(
        drive(), partitions=("/dev/sdb1", "/dev/sdb2")
    )
    assert usb_drive(dev(usb_props(ID_BUS="ata"), DISK, parts)) is None


def test_events_refuse_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="action must be one of"):
        DriveEvent(action="changed", drive=drive())  # type: ignore[arg-type]


# --- pure: folding uevents into drive events --------------------------------------------------


def test_a_disk_is_reported_once_its_partitions_have_settled() -> None:
    fold = _Fold(settle=0.5)
    bare = drive_from_properties(usb_props(), syspath=DISK)
    assert fold.disk("add", DISK, bare, now=10.0) == []
    assert fold.partition("add", DISK + "/sdb1", "/dev/sdb1", now=10.1) == []
    assert fold.settled(now=10.5) == []  # the partition pushed the settle time to 10.6
    assert fold.next_due() == pytest.approx(10.6)
    assert fold.settled(now=10.6) == [DriveEvent(action="added", drive=drive())]
    assert fold.settled(now=99.0) == []


def test_a_late_partition_re_reports_the_drive_and_removal_reports_the_last_known() -> None:
    fold = _Fold(settle=0.5)
    fold.disk("add", DISK, drive_from_properties(usb_props(), syspath=DISK), now=0.0)
    [added] = fold.settled(now=1.0)
    assert added.drive.partitions == ()
    [again] = fold.partition("add", DISK + "/sdb1", "/dev/sdb1", now=2.0)
    assert again == DriveEvent(action="added", drive=drive())
    assert fold.partition("remove", DISK + "/sdb1", "/dev/sdb1", now=3.0) == []
    # removed as last reported, with the partition that went just before the disk
    assert fold.disk("remove", DISK, None, now=3.0) == [
        DriveEvent(action="removed", drive=again.drive)
    ]
    assert fold.disk("remove", DISK, None, now=3.0) == []


def test_a_disk_change_re_reports_the_drive_only_if_it_differs() -> None:
    fold = _Fold(settle=0.5)
    fold.seed(drive())
    assert fold.disk("change", DISK, drive(), now=1.0) == []
    relabelled = replace(drive(), model="Other")
    assert fold.disk("change", DISK, relabelled, now=2.0) == [
        DriveEvent(action="added", drive=relabelled)
    ]


def test_a_disk_removed_before_it_settled_is_never_reported() -> None:
    fold = _Fold(settle=0.5)
    fold.disk("add", DISK, drive_from_properties(usb_props(), syspath=DISK), now=0.0)
    assert fold.disk("remove", DISK, None, now=0.1) == []
    assert fold.settled(now=5.0) == []
    assert fold.next_due() is None


def test_non_usb_disks_and_their_partitions_make_no_events() -> None:
    fold = _Fold(settle=0.5)
    assert fold.disk("add", DISK, None, now=0.0) == []
    assert fold.partition("add", DISK + "/sdb1", "/dev/sdb1", now=0.0) == []
    assert fold.disk("remove", DISK, None, now=1.0) == []
    assert fold.settled(now=5.0) == []


# --- pure: the drive table and the serial check -----------------------------------------------


def test_table_follows_events_and_finds_by_normalised_serial() -> None:
    table = DriveTable()
    a, b = drive("AA0011"), drive("BB0022", "/dev/sdc", DISK2)
    table.apply(DriveEvent(action="added", drive=b))
    table.apply(DriveEvent(action="added", drive=a))
    assert table.present() == [a, b]
    assert table.find("aa-0011") == a
    assert table.find("CC0033") is None
    table.apply(DriveEvent(action="removed", drive=a))
    assert table.present() == [b]
    assert table.find("AA0011") is None


def test_check_refuses_a_wrong_serial_with_the_reason() -> None:
    table = DriveTable([drive("BB0022")])
    assert table.check("albany", "AA0011", drive("BB0022")) == (
        "drive albany expects serial AA0011; the drive plugged in has serial BB0022: "
        "wrong drive, nothing is written to it"
    )


def test_check_accepts_the_right_serial_normalised_and_no_expected_serial() -> None:
    table = DriveTable([drive("AA0011")])
    assert table.check("albany", "aa-00 11", drive("AA0011")) is None
    assert table.check("albany", None, drive("ZZ9999")) is None
    assert table.check("albany", "", drive("ZZ9999")) is None


def test_check_refuses_a_drive_without_serial_and_two_drives_with_one() -> None:
    table = DriveTable([drive(""), drive("AA0011", "/dev/sdc", DISK2)])
    assert "reports no serial: wrong drive" in str(table.check("albany", "AA0011", drive("")))
    twin = drive("AA0011")
    table.apply(DriveEvent(action="added", drive=twin))
    assert table.check("albany", "AA0011", twin) == (
        "drive albany: 2 drives plugged in have serial AA0011; unplug all but one, "
        "nothing is written to any"
    )
    with pytest.raises(ValueError, match="2 drives plugged in have serial AA0011"):
        table.find("AA0011")


# --- UsbWatch against umockdev ----------------------------------------------------------------


@pytest.fixture
def bed() -> Iterator[MockUdev]:
    missing = umockdev_missing()
    if missing:
        pytest.skip(missing)
    with MockUdev() as bed:
        yield bed


@pytest.mark.parametrize("mode", ["poll", "trio"])
def test_plugging_and_unplugging_a_usb_drive(bed: MockUdev, mode: str) -> None:
    with WatchProbe(bed, mode) as probe:
        assert probe.initial == []
        start = time.monotonic()
        syspath = bed.plug("sdb", "4C530001230517110273", "SanDisk", "Cruzer_Blade")
        added = probe.event(timeout=5)
        took = time.monotonic() - start
        expected = UsbDrive(
            serial="4C530001230517110273",
            vendor="SanDisk",
            model="Cruzer_Blade",
            devnode="/dev/sdb",
            partitions=("/dev/sdb1",),
            syspath=syspath,
        )
        assert added == DriveEvent(action="added", drive=expected)
        assert took < 3, f"added reported {took:.2f} s after the plug"
        assert probe.present() == [expected]

        bed.unplug(syspath)
        assert probe.event(timeout=5) == DriveEvent(action="removed", drive=expected)
        assert probe.present() == []
        assert probe.event(timeout=0.8) is None  # nothing else: no repeat, no stray partition

        again = bed.plug("sdb", "4C530001230517110273", "SanDisk", "Cruzer_Blade")  # plugged back
        assert probe.event(timeout=5) == DriveEvent(
            action="added", drive=replace(expected, syspath=again)
        )


def test_two_drives_are_told_apart_and_checked_by_serial(bed: MockUdev) -> None:
    with WatchProbe(bed, "poll") as probe:
        a = bed.plug("sdb", "AA0011", "Kingston", "DataTraveler", partitions=2)
        b = bed.plug("sdc", "BB0022", "Verbatim", "Store_n_Go")
        table = DriveTable()
        for _ in range(2):
            event = probe.event(timeout=5)
            assert event is not None and event.action == "added"
            table.apply(event)
        first, second = table.present()
        assert (first.devnode, first.serial, first.vendor, first.syspath) == (
            "/dev/sdb",
            "AA0011",
            "Kingston",
            a,
        )
        assert first.partitions == ("/dev/sdb1", "/dev/sdb2")
        assert (second.devnode, second.serial, second.model, second.partitions) == (
            "/dev/sdc",
            "BB0022",
            "Store_n_Go",
            ("/dev/sdc1",),
        )
        assert probe.present() == [first, second]
        assert table.find("bb-0022") == second
        assert table.check("albany", "aa0011", first) is None
        assert table.check("albany", "AA0011", second) == (
            "drive albany expects serial AA0011; the drive plugged in has serial BB0022: "
            "wrong drive, nothing is written to it"
        )

        bed.unplug(b)
        removed = probe.event(timeout=5)
        assert removed == DriveEvent(action="removed", drive=second)
        table.apply(removed)
        assert table.present() == [first]


def test_drives_present_at_start_are_listed_and_their_removal_reported(bed: MockUdev) -> None:
    syspath = bed.plug("sdb", "AA0011", "Kingston", "DataTraveler")
    with WatchProbe(bed, "trio") as probe:
        [there] = probe.initial
        assert (there.serial, there.devnode, there.partitions, there.syspath) == (
            "AA0011",
            "/dev/sdb",
            ("/dev/sdb1",),
            syspath,
        )
        bed.unplug(syspath)
        assert probe.event(timeout=5) == DriveEvent(action="removed", drive=there)


def test_a_sata_disk_is_ignored(bed: MockUdev) -> None:
    bed.plug("sda", "WD-WCC4N0000001", "ATA", "WDC_WD10EZEX", bus="ata")
    with WatchProbe(bed, "poll") as probe:
        assert probe.initial == []
        ata = bed.plug("sdd", "S3Z9NB0K000002", "ATA", "Samsung_SSD_860", bus="ata")
        usb = bed.plug("sde", "CC0033", "Kingston", "DataTraveler")
        event = probe.event(timeout=5)
        assert event is not None
        assert (event.action, event.drive.serial, event.drive.devnode) == (
            "added",
            "CC0033",
            "/dev/sde",
        )
        assert [d.serial for d in probe.present()] == ["CC0033"]
        bed.unplug(ata)
        bed.unplug(usb)
        removed = probe.event(timeout=5)
        assert removed is not None and (removed.action, removed.drive.serial) == (
            "removed",
            "CC0033",
        )
        assert probe.event(timeout=0.8) is None
