"""The rules that tie steps to each other and to the declarations: numbering, actors, each
action's parameters, value references, quorums, seals and hand-overs.

Order matters in a ceremony, so "earlier" here means earlier in the file, whatever the numbers
say: a reference to a later step, or a quorum collected after the operation it approves, could
never be satisfied when the ceremony runs.
"""

from __future__ import annotations

from ceremony.script.declared import Declared, one_of
from ceremony.script.formats import FORMATS, check_value
from ceremony.script.locate import KeyPath
from ceremony.script.model import PARAMETERS
from ceremony.script.schema import (
    OBSERVATION_FORMATS,
    PARAMETER_KEYS,
    QUORUM_ACTIONS,
    YIELDS,
    step_parameters,
)
from ceremony.script.step_kinds import STEP_KINDS
from ceremony.script.tables import Row

_PARAMETERS = frozenset(k.name for k in PARAMETER_KEYS)
_ANY = "any"  # the format of a `previous.KEY` value: the previous record is read at run time


class StepChecker:
    def __init__(self, declared: Declared) -> None:
        self.d = declared
        self.report = declared.report
        self.steps = declared.steps
        self.position: dict[int, int] = {}  # step number -> index of its first step in the file
        self.talks_to: dict[str, Row] = {}  # signer name -> the first step that reaches it
        backups = [s for s in self.steps if s.get("action") == "hsm.backup"]
        self.passwords = {s.get("password") for s in backups if s.get("password")} | \
            set(declared.passwords or ())
        # a password written wrong (and reported) may be the one a seal names: do not guess
        self.passwords_known = all(s.get("password") for s in backups if "password" in s.written)

    def check(self) -> None:
        self._numbers()
        for pos, step in enumerate(self.steps):
            self._step(pos, step)
        for quorum in (self.d.quorums or {}).values():
            self._authorizes(quorum)

    def _numbers(self) -> None:
        last: int | None = None
        for pos, step in enumerate(self.steps):
            n = step.get("n")
            if n is None:
                continue
            if n in self.position:
                first = self.d.line((*self.steps[self.position[n]].path, "n"))
                self.report((*step.path, "n"), f"duplicate step number {n} (first at line {first})")
            else:
                if last is not None and n < last:
                    self.report((*step.path, "n"), f"step {n} comes after step {last} "
                                "(expected numbers that increase through the file)")
                self.position[n] = pos
            last = n

    def _step(self, pos: int, step: Row) -> None:
        if actor := step.get("actor"):
            self.d.acting_role(actor, (*step.path, "actor"))
        action = step.get("action")
        if action is None:
            return  # missing or unknown, already reported: its parameters cannot be judged
        if "seat" in step.written and STEP_KINDS[action].work != "person" or \
                action in ("signin", "signoff") and step.get("seat"):
            self.report((*step.path, "seat"), f"a seat names who does a person's step; "
                        f"{action!r} is not one a single seat does")
        if step.get("distinct_from"):
            if STEP_KINDS[action].work != "person" or action == "signin":
                self.report((*step.path, "distinct_from"), f"distinct_from names whose people may "
                            f"not do a person's step; {action!r} is not one a person does (a "
                            "quorum's approvers: put distinct_from on the [[quorums]] table)")
            else:
                self._apart(step.get("distinct_from"), pos, (*step.path, "distinct_from"),
                            seat=step.get("seat"))
        observe = step.get("observe") if action == "verify" else None
        required, optional = step_parameters(action, observe)
        for name in sorted(step.written & _PARAMETERS - set(required) - set(optional)):
            takes = ", ".join(required + optional) or "none"
            subject = f"a verify step observing {observe}" if observe else f"action {action!r}"
            self.report((*step.path, name),
                        f"{name!r} is not a parameter of {subject} (it takes {takes})")
        for name in required:
            if name not in step.written:
                doc = next(k.kind.doc for k in PARAMETER_KEYS if k.name == name)
                subject = f"a verify step observing {observe}" if observe and \
                    name not in PARAMETERS["verify"][0] else f"action {action!r}"
                self.report((*step.path, name), f"{subject} requires {name!r} (expected {doc})")
        self._names(step, required + optional)
        file = step.get("file")
        if isinstance(file, str) and file.startswith("previous.") and self.d.previous is not None \
                and file.removeprefix("previous.") not in self.d.previous:
            self.report((*step.path, "file"), f"{file.removeprefix('previous.')!r} is not listed "
                        f"in ceremony.previous ({one_of(self.d.previous, 'previous key')})")
        self._order(pos, step, action, observe)
        kind = STEP_KINDS.get(action)
        if kind is not None and kind.check is not None:
            getattr(self, kind.check)(pos, step)

    def _order(self, pos: int, step: Row, action: str, observe: str | None) -> None:
        """What must come first in the file: a drive is plugged in (`drive.insert`) before it
        is read, written or ejected; a backup or transcript is written before it is checked
        or copied. Without this, a rehearsal "verifies" a drive with no serial, or a digest
        check fails at run time with nothing to check."""
        earlier = self.steps[:pos]
        drive = step.get("drive")
        if action == "hsm.restore":
            self._restore_order(pos, step)
        reads = action in ("drive.copy", "drive.verify", "drive.eject", "transcript") or \
            observe in ("drive.serial", "drive.sha256")
        if reads and drive and not any(s.get("action") == "drive.insert"
                                       and s.get("drive") == drive for s in earlier):
            self.report((*step.path, "drive"), f"drive {drive!r} is used before it is plugged "
                        f"in (expected a drive.insert step with drive = {drive!r} before this "
                        "step)")
        source = step.get("source") if action == "drive.copy" else None
        for what, writer, needed in (("backup", "hsm.backup", observe == "backup.sha256"
                                      or source == "backup"),
                                     ("transcript", "transcript", observe == "transcript.sha256"
                                      or source == "transcript")):
            if needed and not any(s.get("action") == writer for s in earlier):
                key = "source" if source == what else "observe"
                self.report((*step.path, key), f"there is no {what} to check or copy here: no "
                            f"{writer} step comes before this step")

    def _names(self, step: Row, allowed: tuple[str, ...]) -> None:
        """Every drive, bag, signer, quorum and policy the step names is declared."""
        d, at = self.d, step.path
        if "drive" in allowed and (drive := step.get("drive")):
            d.lookup(d.drives, "drive", drive, (*at, "drive"))
        if "bag" in allowed and (bag := step.get("bag")):
            d.lookup(d.bags, "bag", bag, (*at, "bag"))
        if "quorum" in allowed:
            for q in step.get("quorum") or ():
                d.lookup(d.quorums, "quorum", q, (*at, "quorum"))
        if "policies" in allowed:
            for i, p in enumerate(step.get("policies") or ()):
                d.lookup(d.policies, "policy", p, (*at, "policies", i))
            if "policies" not in step.written and d.policies == {}:
                self.report((*at, "action"), "hsm.generate for all policies, and no [[policies]] "
                            "is declared")
        if "signer" in allowed and d.signers is not None:
            talks = step.get("signer") if "signer" in step.written else (
                next(iter(d.signers)) if len(d.signers) == 1 else None)
            if talks and talks in d.signers:
                self._one_signer(talks, step)
            if "signer" in step.written:
                if signer := step.get("signer"):
                    d.lookup(d.signers, "signer", signer, (*at, "signer"))
            elif not d.signers:
                self.report((*at, "signer"), "names no signer, and no [[signers]] is declared")
            elif len(d.signers) > 1:
                self.report((*at, "signer"), f"names no signer, and {len(d.signers)} signers are "
                            f"declared ({one_of(d.signers, 'signer')})")

    # -- per action -------------------------------------------------------------------------------

    def _verify(self, pos: int, step: Row) -> None:
        observe, expect, value = step.get("observe"), step.get("expect"), step.get("value")
        has_expect, has_value = "expect" in step.written, "value" in step.written
        if has_expect == has_value:
            got = "both" if has_expect else "neither"
            self.report((*step.path, "value" if has_value else "expect"),
                        f"a verify step needs exactly one of expect or value, got {got}")
            return
        if observe is None:
            return
        fmt = OBSERVATION_FORMATS[observe]
        if value is not None and check_value(fmt, value) is None:
            self.report((*step.path, "value"),
                        f"{value!r} is not a valid {fmt} (expected {FORMATS[fmt]})")
        if expect is not None:
            got = self._reference(expect, pos, (*step.path, "expect"))
            if got not in (None, _ANY, fmt):
                self.report((*step.path, "expect"), f"{expect} yields format {got}, but "
                            f"{observe} is compared in format {fmt}")

    def _reference(self, ref: str, pos: int, at: KeyPath) -> str | None:
        """The format of the value `ref` names, `_ANY`, or None if it does not resolve."""
        d = self.d
        kind, _, rest = ref.partition(".")
        if kind == "previous":
            if d.previous is not None and rest not in d.previous:
                self.report(at, f"{rest!r} is not listed in ceremony.previous "
                            f"({one_of(d.previous, 'previous key')})")
                return None
            return _ANY
        if kind == "step":
            return self._yielded(int(rest), pos, at)
        name, _, attr = rest.rpartition(".")
        if kind == "signer":
            signer = d.lookup(d.signers, "signer", name, at)
            if signer is None:
                return None
            if signer.get(attr) is None:
                if attr not in signer.written:  # else it was written wrong, and reported
                    self.report(at, f"signer {name!r} declares no {attr}")
                return None
            return "host-key" if attr == "host_key" else "text"
        drive = d.lookup(d.drives, "drive", name, at)
        if drive is None:
            return None
        if drive.get("serial") is None:
            if "serial" not in drive.written:
                self.report(at, f"drive {name!r} declares no serial")
            return None
        return "usb-serial"

    def _one_signer(self, name: str, step: Row) -> None:
        """Every step reaches the same signer: a ceremony's coordinator holds one link (its
        config's `[signer]`, the rehearsal's one shim), and a second signer's steps would be
        answered by the first one's HSM. Another signer is another ceremony."""
        first = self.talks_to.setdefault(name, step)
        if len(self.talks_to) > 1 and first is step:
            other, row = next((n, r) for n, r in self.talks_to.items() if n != name)
            self.report((*step.path, "signer" if "signer" in step.written else "action"),
                        f"this step reaches signer {name!r}, and step {row.get('n')} (line "
                        f"{self.d.line(row.path)}) reaches {other!r}: a ceremony reaches one "
                        "signer (its coordinator holds one link); check the other signer in a "
                        "ceremony of its own")

    def _earlier(self, n: int, pos: int, at: KeyPath) -> Row | None:
        """Step `n` if it comes before position `pos` in the file; reports otherwise."""
        if n not in self.position:
            self.report(at, f"step {n} does not exist")
            return None
        if self.position[n] >= pos:
            self.report(at, f"step {n} does not come before this step")
            return None
        return self.steps[self.position[n]]

    def _yielded(self, n: int, pos: int, at: KeyPath) -> str | None:
        """The format of the value step `n` yields; reports if it is not an earlier such step."""
        target = self._earlier(n, pos, at)
        if target is None:
            return None
        action = target.get("action")
        if action is None:
            return None  # its action is wrong, and reported: what it yields is unknown
        if action not in YIELDS:
            self.report(at, f"step {n} ({action}) yields no value "
                        f"(expected a step whose action is one of {', '.join(YIELDS)})")
            return None
        return target.get("format") if action == "record" else YIELDS[action]

    def _record(self, pos: int, step: Row) -> None:
        fmt = step.get("format")
        if fmt is None:
            return
        for name, only in (("bag", "bag-serial"), ("drive", "usb-serial")):
            if name in step.written and fmt != only:
                self.report((*step.path, name),
                            f"{name!r} applies only to format = {only!r}, not {fmt!r}")
        if (n := step.get("equals")) is not None:
            got = self._yielded(n, pos, (*step.path, "equals"))
            if got is not None and got != fmt:
                self.report((*step.path, "equals"), f"step {n} yields format {got}, but "
                            f"this step records format {fmt}")
        if (expect := step.get("expect")) is not None:
            at = (*step.path, "expect")
            if "equals" in step.written:
                self.report(at, "a record step takes equals or expect, not both")
            got = self._reference(expect, pos, at)
            if got not in (None, _ANY, fmt):
                self.report(at, f"{expect} yields format {got}, but this step records "
                            f"format {fmt}")

    def _quorum(self, pos: int, step: Row) -> None:
        ids = step.get("quorum")
        if not ids:
            return
        if len(ids) != 1:
            self.report((*step.path, "quorum"),
                        f"a quorum step collects one quorum, got {len(ids)} (expected one id)")
            return
        quorum = (self.d.quorums or {}).get(ids[0])
        if quorum is None:
            return
        m, count = quorum.get("m"), step.get("count")
        if m is not None and count is not None and count > m:
            self.report((*step.path, "count"),
                        f"count {count} is more than m = {m} of quorum {ids[0]!r} "
                        f"(expected 1..{m})")
        target = quorum.get("authorizes")
        if target in self.position and self.position[target] <= pos:
            self.report((*step.path, "quorum"), f"quorum {ids[0]!r} authorizes step {target}, "
                        "which comes before this step (expected quorum steps before it)")

    def _seal(self, pos: int, step: Row) -> None:
        bag, n = step.get("bag"), step.get("serial")
        if n is not None:
            at = (*step.path, "serial")
            target = self._earlier(n, pos, at)
            action = target.get("action") if target else None
            fmt = target.get("format") if target else None
            if target is None or action is None or (action == "record" and fmt is None):
                pass  # reported, here or at the target
            elif action != "record" or fmt != "bag-serial":
                self.report(at, f"step {n} does not record a bag serial "
                            "(expected a record step with format = \"bag-serial\")")
            elif bag is not None and "bag" not in target.written:
                self.report(at, f"step {n} records a bag serial but names no bag "
                            f"(expected bag = {bag!r} on it)")
            elif bag is not None and target.get("bag") not in (None, bag):
                self.report(at, f"step {n} records the serial of bag {target.get('bag')!r}, "
                            f"not {bag!r}")
        self._contents(step)

    def _contents(self, step: Row, *, earlier: bool = False) -> None:
        """A bag's contents: each drive declared, each password one a backup step writes (or,
        with `earlier`, one a previous ceremony may have sealed: any name)."""
        d = self.d
        for i, item in enumerate(step.get("contents") or ()):
            kind, _, name = item.partition(":")
            at = (*step.path, "contents", i)
            if kind == "drive":
                d.lookup(d.drives, "drive", name, at)
            elif kind == "password" and not earlier and self.passwords_known \
                    and name not in self.passwords:
                self.report(at, f"{name!r} is not the password of any hsm.backup step nor "
                            f"declared in [[passwords]] ({one_of(self.passwords, 'password')})")

    def _unseal(self, pos: int, step: Row) -> None:
        """An unsealed bag's contents, if listed, are what a bag can hold. A bag that no seal
        earlier in the file seals comes from the previous ceremony's custody record, which the
        machine checks when it starts (`Machine`: the record must hold it)."""
        self._contents(step, earlier=True)

    def _handover(self, pos: int, step: Row) -> None:
        """A bag changes hands only once it is sealed: an earlier step in the file seals it."""
        bag = step.get("bag")
        if bag is None or self.d.bags is None or bag not in self.d.bags:
            return  # missing, or not declared: reported already
        seals = [s for s in self.steps[:pos] if s.get("action") == "seal"]
        if any("bag" in s.written and s.get("bag") is None for s in seals):
            return  # a seal's bag is written wrong (and reported): it may be this one
        if not any(s.get("bag") == bag for s in seals):
            self.report((*step.path, "bag"), f"bag {bag!r} is not sealed by any seal step "
                        "before this step (expected a seal step with this bag earlier)")

    def _drive_copy(self, pos: int, step: Row) -> None:
        source = step.get("source") or ""
        if source.startswith("drive:"):
            label = source.removeprefix("drive:")
            at = (*step.path, "source")
            if label == step.get("drive"):
                self.report(at, f"copies drive {label!r} onto itself")
            else:
                self.d.lookup(self.d.drives, "drive", label, at)

    def _restore(self, pos: int, step: Row) -> None:
        """A restore reads its backup off a declared drive (`drive:LABEL`, nothing else), and
        its password is one this script knows: a backup step's, or one in `[[passwords]]`."""
        source, at = step.get("source") or "", (*step.path, "source")
        if source and not source.startswith("drive:"):
            self.report(at, f"hsm.restore reads its backup off a drive: source {source!r} "
                        "(expected \"drive:LABEL\", a declared drive)")
        elif source:
            self.d.lookup(self.d.drives, "drive", source.removeprefix("drive:"), at)
        name = step.get("password")
        if name and self.passwords_known and name not in self.passwords:
            self.report((*step.path, "password"), f"{name!r} is not the password of any "
                        f"hsm.backup step nor declared in [[passwords]] "
                        f"({one_of(self.passwords, 'password')})")
        written = {"password", "shares"} & step.written
        if len(written) != 1:
            self.report((*step.path, "password" if not written else "shares"),
                        "hsm.restore needs what opens the backup: a `password` (a token-directory "
                        "backup) or `shares`, the role bringing the KEK's shares (a wrap backup); "
                        + ("not both" if written else "neither is given"))
        self._shares_role(step)

    def _shares_role(self, step: Row) -> None:
        """`shares` names a declared, trusted, acting role: its officers bring the shares."""
        role = step.get("shares")
        if role and self.d.roles is not None:
            at = (*step.path, "shares")
            row = self.d.roles.get(role)
            if row is None:
                self.report(at, f"{role!r} is not a declared role ({one_of(self.d.roles, 'role')})")
            elif row.get("observer") or not row.get("trusted"):
                self.report(at, f"{role!r} is an observer or untrusted role; KEK shares are "
                            "brought by officers of a trusted, acting role")

    def _kek(self, pos: int, step: Row) -> None:
        """The KEK's holders are different seats, at least `threshold` of them (at most 16)."""
        self._approved(pos, step)
        holders, threshold = list(step.get("holders") or ()), step.get("threshold")
        at = (*step.path, "holders")  # a seat named twice: the array's reader reports it
        if len(holders) > 16:
            self.report(at, f"{len(holders)} holders; SLIP-39 splits a secret into at most 16 "
                        "shares")
        if isinstance(threshold, int) and holders and threshold > len(holders):
            self.report((*step.path, "threshold"), f"{threshold} shares needed but only "
                        f"{len(holders)} holders (expected at most {len(holders)})")

    def _kek_share(self, pos: int, step: Row) -> None:
        """A share is handed to a seat that an earlier hsm.kek step names among its holders."""
        seat = step.get("seat")
        kek = [s for s in self.steps[:pos] if s.get("action") == "hsm.kek"]
        if not seat:
            self.report((*step.path, "seat"), "kek.share requires 'seat', the holder whose "
                        "share it is (expected one of an earlier hsm.kek step's holders)")
        elif not kek:
            self.report((*step.path, "action"), "kek.share hands over a share of a KEK made "
                        "earlier (expected an hsm.kek step before it)")
        elif kek[-1].get("holders") and seat not in kek[-1].get("holders"):
            holders = ", ".join(kek[-1].get("holders"))
            self.report((*step.path, "seat"), f"{seat!r} is not a holder of step "
                        f"{kek[-1].get('n')}'s KEK (its holders: {holders})")

    def _drive_verify(self, pos: int, step: Row) -> None:
        """`shares` belongs to the restore drill of a wrap backup."""
        if step.get("shares") and not step.get("drill"):
            self.report((*step.path, "shares"), "shares are brought for the restore drill "
                        "(expected drill = true beside it)")
        self._shares_role(step)

    def _restore_order(self, pos: int, step: Row) -> None:
        """The backup's drive is plugged in before the restore is planned: at the restore, or
        at the first quorum step that collects approvals for it (the plan comes first)."""
        source = step.get("source") or ""
        if not source.startswith("drive:"):
            return
        label, n = source.removeprefix("drive:"), step.get("n")
        if label not in (self.d.drives or {}):
            return  # not declared: reported as such
        quorums = {q for q, row in (self.d.quorums or {}).items()
                   if row.get("authorizes") == n and n is not None}
        first = min([pos] + [i for i, s in enumerate(self.steps[:pos]) if
                             s.get("action") == "quorum" and set(s.get("quorum") or ()) & quorums])
        if not any(s.get("action") == "drive.insert" and s.get("drive") == label
                   for s in self.steps[:first]):
            where = "this step" if first == pos else f"step {self.steps[first].get('n')}, the " \
                "first quorum step for it (the restore is planned there)"
            self.report((*step.path, "source"), f"drive {label!r} is used before it is plugged "
                        f"in (expected a drive.insert step with drive = {label!r} before "
                        f"{where})")

    def _signoff(self, pos: int, step: Row) -> None:
        """Who else signs the closing checkpoint: declared roles, not the actor's own (its
        officers sign anyway). Observers may: signing the record is not acting in the ceremony,
        and an auditor's signature on it is what an audit is for."""
        for i, role in enumerate(step.get("cosigners") or ()):
            at = (*step.path, "cosigners", i)
            if role == step.get("actor"):
                self.report(at, f"{role!r} is the step's actor, who signs anyway (expected "
                            "the other roles whose officers sign too)")
            elif self.d.roles is not None and role not in self.d.roles:
                self.report(at, f"{role!r} is not a declared role "
                            f"({one_of(self.d.roles, 'role')})")

    def _approved(self, pos: int, step: Row) -> None:
        """Each quorum a state-changing hsm step lists authorizes exactly that step.

        No quorum step is required before it: when approvals are collected is the machine's rule.
        """
        n = step.get("n")
        for q in step.get("quorum") or ():
            quorum = (self.d.quorums or {}).get(q)
            target = quorum.get("authorizes") if quorum else None
            if target is not None and n is not None and target != n:
                self.report((*step.path, "quorum"),
                            f"quorum {q!r} authorizes step {target}, not this step {n}")

    def _authorizes(self, quorum: Row) -> None:
        target, q = quorum.get("authorizes"), quorum.get("id")
        if target is None or q is None:
            return
        at = (*quorum.path, "authorizes")
        if target not in self.position:
            self.report(at, f"step {target} does not exist")
            return
        step = self.steps[self.position[target]]
        action = step.get("action")
        if action is None or ("quorum" in step.written and step.get("quorum") is None):
            return  # reported at the step
        if action not in QUORUM_ACTIONS:
            self.report(at, f"step {target} has action {action} "
                        f"(expected one of {', '.join(QUORUM_ACTIONS)})")
        elif q not in (step.get("quorum") or ()):
            self.report(at, f"step {target} does not list quorum {q!r}")
        m, seats = quorum.get("m"), quorum.get("seats") or ()
        if seats and m is not None and len(seats) < m:
            self.report((*quorum.path, "seats"), f"quorum {q!r} needs {m} different people but "
                        f"lists {len(seats)} seat{'s' if len(seats) > 1 else ''} (expected at "
                        f"least {m})")
        apart = quorum.get("distinct_from") or ()
        if apart:
            self._apart(apart, self.position[target], (*quorum.path, "distinct_from"),
                        collects=q)

    def _apart(self, steps: tuple[int, ...], pos: int, at: KeyPath,
               collects: str | None = None, seat: str | None = None) -> None:
        """`distinct_from`: earlier steps a person acts on or approves (not the coordinator's
        own work), not the quorum's own collection, and not a step only the same seat does."""
        for i, n in enumerate(steps):
            target = self._earlier(n, pos, (*at, i))
            action = target.get("action") if target else None
            if target is None or action is None:
                continue
            if STEP_KINDS[action].work in ("observe", "perform"):
                self.report((*at, i), f"step {n} ({action}) is the coordinator's work: nobody "
                            "acts on it (expected a person's, a quorum or an hsm.* step)")
            elif seat is not None and target.get("seat") == seat:
                self.report((*at, i), f"step {n} is for seat {seat} too, and this step only for "
                            f"{seat}: nobody can do it apart from step {n}")
            elif collects is not None and collects in (target.get("quorum") or ()):
                self.report((*at, i), f"step {n} collects quorum {collects!r} itself (expected "
                            "a step whose people are other than its approvers)")
