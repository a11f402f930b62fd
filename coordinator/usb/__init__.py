"""USB flash drives for the live coordinator: udev's view of them (`watch`)."""

from coordinator.usb.watch import (
    DriveEvent,
    DriveTable,
    UsbDrive,
    UsbWatch,
    drive_from_properties,
    normalise_serial,
    usb_drive,
)

__all__ = [
    "DriveEvent",
    "DriveTable",
    "UsbDrive",
    "UsbWatch",
    "drive_from_properties",
    "normalise_serial",
    "usb_drive",
]
