"""The rehearsal's cast: anonymous people holding the seed's seats, with the seed's overlaps
(the administrator was also a DSO; the first KSO was also a DSO), and where each bag goes.

The scripted officers sign each person in for all their seats at once, so a cast whose seats the
script's separation of duty forbids one person to hold together would be refused by the machine
in the middle of the ceremony: `check_cast` refuses it first, as bad input, before anything is
made."""

from __future__ import annotations

from collections.abc import Iterable

from ceremony.errors import BadInput
from ceremony.machine.machine import role_overflow, separation_breach
from ceremony.script.model import Script
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


def check_cast(script: Script, people: Iterable[Person]) -> None:
    """Refuse (BadInput, with the rule's words) a cast in which one person holds seats that the
    script's separation of duty does not let one person hold together, or more people hold a
    role than its `max`: the machine's own rules (`ceremony.machine.machine.separation_breach`,
    `role_overflow`), over the roles of the script. A role the script lacks is the roster's
    check, when the machine is made."""
    holders: dict[str, set[str]] = {}
    for p in people:
        roles = [r for r in map(seat_role, p.seats) if r in script.roles]
        breach = separation_breach(script, roles)
        if breach is not None:
            raise BadInput(f"the rehearsal's cast cannot be signed in under this script: "
                           f"{p.name} ({p.person}) holds {', '.join(p.seats)}: {breach}")
        for r in roles:
            holders.setdefault(r, set()).add(p.person)
    overflow = role_overflow(script, holders)
    if overflow is not None:
        raise BadInput(f"the rehearsal's cast cannot be signed in under this script: {overflow}")
