"""The rehearsal's cast, derived from the script: anonymous people holding seats of its roles, as
many as its rules need, combined only where its separation of duty allows; and where each bag
goes.

`cast_for(script)` starts from the seed's people (`PEOPLE`: the administrator was also a DSO, the
first KSO was also a DSO), so the bundled script is rehearsed by the same cast as always. For any
other script it keeps only seats of the script's roles, no more of a role than its `max`, and
gives a seat its own person wherever the script's `[separation]` forbids the seed's overlap;
then it adds people (one seat each: never a combination) until every role has what the script
needs: its `min`, the `m` of each of its quorums (distinct people), a second person where a bag
is handed over within the role (nobody takes a bag from themselves), and one of every role, a
witness included.

The scripted officers sign each person in for all their seats at once, so a cast whose seats the
script's separation of duty forbids one person to hold together would be refused by the machine
in the middle of the ceremony: `check_cast` refuses it first, as bad input, before anything is
made."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

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
    """The role of one of the seed's seats (`KSO1` -> `KSO`). A derived cast says each seat's
    role itself (`Cast.roles`): a role's name may end in a digit."""
    return seat.rstrip("0123456789")


@dataclass(frozen=True)
class Cast:
    """The people of a rehearsal, each seat's role, and the seat each sealed bag goes to."""

    people: tuple[Person, ...]
    roles: dict[str, str]  # seat -> role
    custodians: dict[str, str]  # bag -> seat

    def seats(self, role: str) -> list[str]:
        return [s for p in self.people for s in p.seats if self.roles[s] == role]


def needed(script: Script) -> dict[str, int]:
    """How many distinct people of each role the script needs: its `min`, the `m` of each of its
    quorums, two where a bag passes between people of one role (or of roles one person may
    combine), and at least one; never more than its `max`."""
    need = {r: max(role.min, 1) for r, role in script.roles.items()}
    for q in script.quorums.values():
        need[q.role] = max(need[q.role], q.m)
    holder: dict[str, str] = {}  # bag -> the role of whoever holds it
    for step in script.steps:
        if step.action == "seal" and step.bag:
            holder[step.bag] = step.actor
        elif step.action == "handover" and step.bag:
            giver = holder.get(step.bag)
            if giver is not None and (giver == step.actor
                                      or frozenset((giver, step.actor)) in script.may_combine):
                need[step.actor] = max(need[step.actor], 2)
            holder[step.bag] = step.actor
    for step in script.steps:  # a step apart from earlier ones: one more than their people
        need[step.actor] = max(need[step.actor], 1 + _apart(script, step.actor,
                                                             step.distinct_from))
    for q in script.quorums.values():
        need[q.role] = max(need[q.role], q.m + _apart(script, q.role, q.distinct_from))
    return {r: min(n, script.roles[r].max) for r, n in need.items()}


def _apart(script: Script, role: str, steps: tuple[int, ...]) -> int:
    """How many people of `role` the `distinct_from` steps may take away: those who act on them
    (a person, or a quorum's m) where they are of `role` or of a role one person may combine
    with it."""
    taken = 0
    for n in steps:
        target = script.step(n)
        ids = target.quorum
        acting = [(script.quorums[q].role, script.quorums[q].m) for q in ids] or \
            [(target.actor, 1)]
        taken += sum(m for r, m in acting
                     if r == role or frozenset((r, role)) in script.may_combine)
    return taken


def _numbered(seat: str) -> tuple[str, int]:
    """`DSO10` sorts after `DSO9`."""
    role = seat_role(seat)
    return role, int(seat[len(role):] or 0)


def _seat_name(role: str, number: int, one: bool) -> str:
    """`KGA` for a role one person holds (`max = 1`), `KSO2` otherwise: the seed's names."""
    return role if one else f"{role}{number}"


def cast_for(script: Script, template: Iterable[Person] = PEOPLE) -> Cast:
    """The cast that rehearses `script` (module docstring): `template`'s people where the script
    has their roles and lets them keep their overlaps, then one person per seat still needed."""
    template = tuple(template)
    roles: dict[str, str] = {}
    people: list[Person] = []
    count: dict[str, int] = {r: 0 for r in script.roles}
    offered: dict[str, list[str]] = {}  # role -> the template's seats of it, lowest first
    for seat in sorted((s for p in template for s in p.seats), key=_numbered):
        offered.setdefault(seat_role(seat), []).append(seat)
    usable = {s for r, seats in offered.items() if r in script.roles
              for s in seats[:script.roles[r].max]}
    for p in template:
        kept: list[str] = []
        split: list[str] = []
        for seat in p.seats:
            if seat not in usable:
                continue
            role = seat_role(seat)
            count[role] += 1
            roles[seat] = role
            mine = [roles[s] for s in kept]
            (kept if separation_breach(script, [*mine, role]) is None else split).append(seat)
        if kept:
            people.append(replace(p, seats=tuple(kept)))
        for seat in split:  # the seed's overlap, which this script forbids: a person of its own
            people.append(_newcomer(script, roles[seat], seat, people))
    for seat, role in named_seats(script).items():  # a seat the script names is in the cast
        if seat not in roles and count[role] < script.roles[role].max:
            count[role] += 1
            roles[seat] = role
            people.append(_newcomer(script, role, seat, people))
    need = needed(script)
    for role, n in need.items():
        taken = set(roles)
        number = 0
        while count[role] < n:
            number += 1
            seat = _seat_name(role, number, script.roles[role].max == 1)
            if seat in taken:
                continue
            count[role] += 1
            roles[seat] = role
            people.append(_newcomer(script, role, seat, people))
    cast = Cast(tuple(people), roles, {})
    cast = replace(cast, custodians=custodians_for(script, cast))
    check_cast(script, cast.people, roles)
    return cast


def named_seats(script: Script) -> dict[str, str]:
    """seat -> role: every seat a step (`seat`) or a quorum (`seats`) names."""
    named = {st.seat: st.actor for st in script.steps if st.seat}
    for q in script.quorums.values():
        named.update(dict.fromkeys(q.seats, q.role))
    return named


def _newcomer(script: Script, role: str, seat: str, people: list[Person]) -> Person:
    """A person of the cast holding `seat` alone, named for it (a unique person id)."""
    taken = {p.person for p in people}
    person, n = f"p-{seat.lower()}", 1
    while person in taken:
        n += 1
        person = f"p-{seat.lower()}-{n}"
    r = script.roles[role]
    organisation = "Registry" if r.trusted else "Independent observer"
    return Person(person, f"{r.title} {seat}", organisation, (seat,))


def custodians_for(script: Script, cast: Cast) -> dict[str, str]:
    """bag -> the seat that takes it at its seal: the seed's custodian where that seat is in the
    cast and of the seal step's role; else the role's seats in turn, so bags spread over people
    as the seed's operative copies went to different organisations."""
    out: dict[str, str] = {}
    turn: dict[str, int] = {}
    for step in script.steps:
        if step.action != "seal" or not step.bag or step.bag in out:
            continue
        if step.seat is not None:  # the script names who takes it
            out[step.bag] = step.seat
            continue
        seed = CUSTODIANS.get(step.bag)
        if seed is not None and cast.roles.get(seed) == step.actor:
            out[step.bag] = seed
            continue
        seats = cast.seats(step.actor)
        if seats:
            i = turn.get(step.actor, 0)
            out[step.bag] = seats[i % len(seats)]
            turn[step.actor] = i + 1
    return out


def check_cast(script: Script, people: Iterable[Person],
               roles: dict[str, str] | None = None) -> None:
    """Refuse (BadInput, with the rule's words) a cast in which one person holds seats that the
    script's separation of duty does not let one person hold together, or more people hold a
    role than its `max`: the machine's own rules (`ceremony.machine.machine.separation_breach`,
    `role_overflow`), over the roles of the script. A role the script lacks is the roster's
    check, when the machine is made. `roles` gives each seat's role (else the seed's names)."""
    role_of = (roles or {}).get
    holders: dict[str, set[str]] = {}
    for p in people:
        held = [role_of(s) or seat_role(s) for s in p.seats]
        held = [r for r in held if r in script.roles]
        breach = separation_breach(script, held)
        if breach is not None:
            raise BadInput(f"the rehearsal's cast cannot be signed in under this script: "
                           f"{p.name} ({p.person}) holds {', '.join(p.seats)}: {breach}")
        for r in held:
            holders.setdefault(r, set()).add(p.person)
    overflow = role_overflow(script, holders)
    if overflow is not None:
        raise BadInput(f"the rehearsal's cast cannot be signed in under this script: {overflow}")
