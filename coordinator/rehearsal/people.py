"""The rehearsal's cast: anonymous people holding the seed's seats, with the seed's overlaps
(the administrator was also a DSO; the first KSO was also a DSO), and where each bag goes."""

from __future__ import annotations

from coordinator.rehearsal.officers import Person

PEOPLE = (
    Person("p-kga", "Administrator A", "Registry", ("KGA", "DSO5")),
    Person("p-sa", "Sysadmin B", "Signing operator", ("SA",)),
    Person("p-kso1", "Officer C", "Registry", ("KSO1", "DSO1")),
    Person("p-kso2", "Officer D", "Registry", ("KSO2",)),
    Person("p-dso2", "Officer E", "Custodian org 2", ("DSO2",)),
    Person("p-dso3", "Officer F", "Custodian org 3", ("DSO3",)),
    Person("p-dso4", "Officer G", "Custodian org 4", ("DSO4",)),
    Person("p-wi", "Witness H", "Observer org", ("WI1",), id_checked=True),
    Person("p-sau", "Auditor I", "Audit firm", ("SAU1",), id_checked=True),
)

#: bag -> the seat that takes it (the seed: each operative copy to one organisation's officer).
CUSTODIANS = {
    "wellington": "DSO3",
    "albany": "DSO2",
    "auckland": "DSO4",
    "master-copy": "KSO1",
    "keygen-log": "KSO1",
}


def seat_role(seat: str) -> str:
    return seat.rstrip("0123456789")
