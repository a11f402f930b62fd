"""The builder behind `Machine.view`: the `CeremonyView` of a machine at a moment.

It reads the machine's state, what the machine wants now and the daemon's `Extras`. It sits
beside the machine, apart from the view's data and wire form (ceremony.view), because only the
builder needs to know the machine's insides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ceremony.digests import colon_hex, pgp_words
from ceremony.machine import decisions as d
from ceremony.machine.machine import Machine, PasswordAsk, ShareAsk
from ceremony.script.formats import check_value
from ceremony.script.step_kinds import STEP_KINDS
from ceremony.view import (
    NAME_MAX,
    VERSION,
    Asked,
    BagView,
    CeremonyView,
    DeviationView,
    DocumentView,
    DriveView,
    ExceptionView,
    Extras,
    Participant,
    Progress,
    QuorumView,
    RoleView,
    StepView,
)

#: Asked.role of a password the restore drill needs: any officer but the backup's typist
SECOND_OFFICER = "second officer"


def _secret_asked(n: int, actor: str, name: str, ask: PasswordAsk | None) -> Asked:
    """A password asked for: at the backup from the step's actor; at the restore drill from
    someone else, reading a sealed copy, so that the drill proves the copies open the backup."""
    if ask is not None and ask.purpose == "drill":
        return Asked(n, SECOND_OFFICER, "secret",
                     f"an officer other than the one who typed it at the backup enters the {name} "
                     "password from a sealed copy, for the restore drill",
                     {"name": name, "purpose": "drill", "not_person": ask.not_person})
    return Asked(n, actor, "secret", f"the {actor} enters the {name} password",
                 {"name": name, "purpose": "backup"})


def _share_asked(ask: ShareAsk, extras: Extras) -> Asked:
    """KEK shares asked for a wrap backup's restore or drill: each officer of the role who has
    not brought one types theirs on their own console, which seals it to the signer's key."""
    need = ask.threshold - len(extras.shares_brought)
    return Asked(ask.step, ask.role, "share",
                 f"{need} more {ask.role}{'s' if need > 1 else ''} bring their KEK share for "
                 f"the {ask.purpose} ({len(extras.shares_brought)} of {ask.threshold} brought)",
                 {"purpose": ask.purpose, "kek_id": ask.kek_id, "threshold": ask.threshold,
                  "brought": list(extras.shares_brought), "share_key": extras.share_key})


class Parts:
    """The parts of a view that depend only on the machine's state and a few extras (who is
    connected, which drives are seen), kept from one view to the next while those stay the same
    (`build_view(..., parts=...)`, the live daemon's). The machine replaces its state object with
    every event it takes (`Machine.handle` works on a copy), so the state object's identity is the
    state's version: this holds the object, so its identity is never another's. A state changed
    in place (a test forcing one) would not be seen: only the daemon passes a `Parts`. The parts
    kept are the same objects from view to view, so ceremony.view.WireForm reuses their wire
    forms and coordinator.bus.view_delta sees them unchanged at a glance."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self.kept: dict[str, Any] = {}

    def get(self, m: Machine, extras: Extras) -> dict[str, Any]:
        key = (m, m._state, extras.connected, extras.drives_seen)
        old = self._key
        if old is None or old[0] is not m or old[1] is not m._state or old[2:] != key[2:]:
            self._key, self.kept = key, _parts(m, extras)
        return self.kept


def _parts(m: Machine, extras: Extras) -> dict[str, Any]:
    """The view's parts that `Parts` keeps: roles, participants, drives, bags, deviations and
    the transcript."""
    s, script, roster = m._state, m.script, m.roster.officers
    participants = tuple(
        Participant(o.seat, o.role, o.person, o.name, o.organisation, o.seat in s.signed_in,
                    o.seat in extras.connected)
        for o in sorted(roster.values(), key=lambda o: o.seat)
    )
    serials = _drive_serials(m)
    drives = tuple(
        DriveView(label, drv.title, m.drive_pin(label), serials.get(label),
                  label in extras.drives_seen)
        for label, drv in sorted(script.drives.items())
    )
    bags = []
    for label, bag in sorted(script.bags.items()):
        c = s.custody.get(label)
        seat = c["custodian"] if c else None
        bags.append(BagView(label, bag.title, c["serial"] if c else None,
                            tuple(c["contents"]) if c else (), seat,
                            roster[seat].name if seat in roster else None))
    roles = tuple(RoleView(r.name, r.title, r.min, r.max, r.observer)
                  for r in script.roles.values())
    deviations = tuple(
        DeviationView(int(x["n"]), str(x["kind"]), str(x["seat"]),
                      roster[x["seat"]].name if x["seat"] in roster else str(x["person"]),
                      str(x["text"]), float(x["at"]), x["step"], x["decision"], x["reason"],
                      x["decided_by"])
        for x in s.deviations)
    return {"participants": participants, "drives": drives, "bags": tuple(bags),
            "roles": roles, "deviations": deviations, "transcript": _transcript(m)}


def build_view(machine: Machine, extras: Extras,
               wants: tuple[d.Decision, ...] | None = None,
               parts: Parts | None = None) -> CeremonyView:
    """The view of `machine` at `extras.now`. Reads the machine, never changes it. `wants`:
    `machine.wants(now=extras.now)`, when the caller has it already; `parts`: the parts kept
    from the last view of this machine (`Parts`), when the caller keeps them."""
    m, s, script = machine, machine._state, machine.script
    if wants is None:
        wants = m.wants(now=extras.now)
    step = m.current
    status = s.status
    if status == "running" and s.paused:
        status = "paused"

    exc = None
    if s.exception is not None:
        x = s.exception
        exc = ExceptionView(int(x["step"]), str(x["kind"]), str(x["reason"]),
                            _opt(x.get("observed")), _opt(x.get("expected")),
                            x["kind"] == "mismatch")

    quorums = _quorums(m, wants, extras.now)

    step_view = None
    section, estimate = None, 0
    if step is not None:
        section = step.section
        estimate = next(x.estimated.seconds for x in script.sections if x.title == step.section)
        # as m.snapshot()["observed"] keys it, without copying the whole state for one value
        observed = _opt({str(k): v for k, v in s.observed.items()}.get(str(step.n)))
        expected = None
        if exc is not None:
            observed, expected = exc.observed, exc.expected
        elif step.action == "verify":
            expected = _expected(m, step)
        elif step.action == "record" and step.equals is not None:
            expected = s.values.get(step.equals)
        ask = m.password_asked(extras.now, wants) if extras.secrets_needed else None
        shares = m.share_asked(extras.now, wants) if extras.share_key else None
        asked = tuple(_asked(w) for w in wants)
        if step.action == "kek.share":  # the holder's console opens the box sealed to it
            box = dict(extras.sealed_shares).get(str(step.seat))
            asked = tuple(replace(a, detail={**a.detail, "box": box})
                          if a.kind == "kek.share" else a for a in asked)
        if shares is not None and len(extras.shares_brought) < shares.threshold:
            asked += (_share_asked(shares, extras),)
        step_view = StepView(
            n=step.n, position=s.index + 1, total=len(m.steps), actor=step.actor,
            action=step.action, text=step.text, note=step.note,
            kga_may_complete=step.kga_may_complete, observed=observed, expected=expected,
            asked=asked + tuple(
                _secret_asked(step.n, step.actor, name, ask) for name in extras.secrets_needed),
        )

    kept = parts.get(m, extras) if parts is not None else _parts(m, extras)
    return CeremonyView(
        version=VERSION, seq=extras.seq, ceremony_id=script.ceremony.id,
        title=script.ceremony.title, script_sha256=script.sha256,
        administrator=script.ceremony.administrator, status=status,
        now=extras.now, section=section, section_estimate=estimate,
        section_started=s.section_since, step=step_view, exception=exc, roles=kept["roles"],
        participants=kept["participants"], quorums=quorums, drives=kept["drives"],
        loose_drives=extras.loose_drives, bags=kept["bags"],
        journal=tuple(extras.journal), progress=_progress(m, extras.progress),
        checkpoint=extras.checkpoint, deviations=kept["deviations"],
        cosigning=extras.cosigning, transcript=kept["transcript"],
    )


#: per script (held, so its id is no other's): the steps that read a drive's serial, and the
#: transcript steps; a view is built after every event, and these were a pass over every
#: completed step each, asking the script for each step
_STEPS_OF: dict[int, tuple[Any, dict[int, Any], frozenset[int]]] = {}


def _steps_of(m: Machine) -> tuple[dict[int, Any], frozenset[int]]:
    hit = _STEPS_OF.get(id(m.script))
    if hit is None or hit[0] is not m.script:
        if len(_STEPS_OF) >= 16:
            _STEPS_OF.clear()
        serial_steps = {st.n: st for st in m.steps if st.drive is not None and (
            st.action == "drive.insert" or (st.action == "verify"
                                            and st.observe == "drive.serial"))}
        transcripts = frozenset(st.n for st in m.steps if st.action == "transcript")
        hit = _STEPS_OF[id(m.script)] = (m.script, serial_steps, transcripts)
    return hit[1], hit[2]


def _drive_serials(m: Machine) -> dict[str, str | None]:
    """`m.drive_serial(label)` of every drive that has one, in one pass over the completed
    steps instead of one pass per drive (the same rule: a label's latest insert, or a later
    serial check)."""
    s, out = m._state, {}
    serial_steps, _ = _steps_of(m)
    for n in reversed(s.completed):
        st = serial_steps.get(n)
        if st is None or st.drive in out:
            continue
        if st.action == "drive.insert":
            out[st.drive] = s.values.get(n)
        else:  # a serial check
            out[st.drive] = s.observed.get(n) or s.values.get(n)
    return out


def _transcript(m: Machine) -> DocumentView | None:
    """The latest printable transcript written (the last completed `transcript` step's result),
    or None before one is. Its text's digest is the step's value: one that does not read as a
    SHA-256 gives no document rather than a line of words officers would compare in vain."""
    # m.results_of("transcript")[-1], without copying every result on the way
    _, transcripts = _steps_of(m)
    s = m._state
    n = next((n for n in reversed(s.completed) if n in transcripts and n in s.results), None) \
        if transcripts else None
    if n is None:
        return None
    r = s.results[n]  # read only
    text = _sha256(r.get("sha256"))
    if text is None:
        return None
    pdf = r.get("pdf")
    pdf_hex = _sha256(r.get("pdf_sha256"))
    confirm = next((x.n for x in m.steps if x.action == "record" and x.equals == n), None)
    return DocumentView(
        step=n, file=_name(r.get("file")), sha256=colon_hex(text), words=pgp_words(text),
        pdf=_name(pdf) if pdf is not None else None,
        pdf_sha256=colon_hex(pdf_hex) if pdf_hex is not None else None,
        confirm_step=confirm, confirmed=confirm is not None and confirm in m.completed)


def _sha256(v: Any) -> str | None:
    """64 lower-case hex digits from a result's digest (colon or plain hex), or None."""
    return check_value("sha256", v) if isinstance(v, str) and len(v) <= 200 else None


def _name(v: Any) -> str:
    """A file name as a screen may draw it: printable characters, at most NAME_MAX of them."""
    text = "".join(c if c.isprintable() else "?" for c in str(v if v is not None else "")[:1000])
    return text if len(text) <= NAME_MAX else text[:NAME_MAX - 1] + "…"


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def _expected(m: Machine, step: Any) -> str | None:
    return m.expected(step)


def _quorums(m: Machine, wants: tuple[d.Decision, ...], now: float) -> tuple[QuorumView, ...]:
    """The quorums asked for now, then every other quorum holding approvals that have not lapsed
    and whose operation has not started (between quorum steps their clocks still run)."""
    s = m._state
    asked = [w for w in wants if isinstance(w, d.RequestApproval)]
    out = [_quorum(m, w.quorum, w.step, w.operation, w.digest, now, asked=True) for w in asked]
    for qid, q in m.script.quorums.items():
        op = s.operations.get(q.authorizes)
        if any(w.quorum == qid for w in asked) or op is None or q.authorizes in s.started:
            continue
        if m.held(qid, now):
            out.append(_quorum(m, qid, q.authorizes, op["operation"], op["digest"], now,
                               asked=False))
    return tuple(out)


def _quorum(m: Machine, qid: str, step: int, operation: dict[str, Any], digest: str, now: float,
            *, asked: bool) -> QuorumView:
    s, q = m._state, m.script.quorums[qid]
    have = m.held(qid, now)
    done_people = {a.person for a in have}
    waiting = () if len(have) >= q.m else tuple(
        seat for seat, person in sorted(s.signed_in.items())
        if person not in done_people and m.may_approve(qid, seat))
    lapses = tuple(float(a.approval.expires) for a in have)
    return QuorumView(qid, q.role, step, dict(operation), digest, len(have), q.m,
                      tuple(a.seat for a in have), waiting, q.expires.seconds,
                      min(lapses) if lapses else None, lapses, asked)


def _progress(m: Machine, p: Progress | None) -> Progress | None:
    """The daemon's last progress while it still concerns the room: while its step is current,
    and once finished, until the first step after it that waits for people is done. A bar of
    unknown step (`step` None) is shown as it comes."""
    cur = m.current
    if p is None or cur is None:
        return None
    if p.step is None or p.step == cur.n:
        return p
    if p.total <= 0 or p.done < p.total:
        return None  # unfinished work of a step that is over: it failed, or was redone
    order = [x.n for x in m.steps]
    try:
        start, here = order.index(p.step), order.index(cur.n)
    except ValueError:
        return None
    between = m.steps[start + 1:here]
    return p if start < here and not any(
        STEP_KINDS[x.action].waits_for_people for x in between) else None


def _asked(w: d.Decision) -> Asked:
    if isinstance(w, d.Ask):
        return Asked(w.step, w.role, w.kind, _ask_text(w), dict(w.detail))
    if isinstance(w, d.RequestApproval):
        return Asked(w.step, w.role, "approve",
                     f"{w.need - w.have} more {w.role} approval(s) of step {w.step}'s "
                     f"{w.operation.get('op', 'operation')}", {"quorum": w.quorum})
    if isinstance(w, d.Observe):
        return Asked(w.step, "", "observe", f"the coordinator reads {w.source}")
    if isinstance(w, d.Plan):
        return Asked(w.step, "", "plan", f"the signer plans {w.action}")
    if isinstance(w, d.Perform):
        return Asked(w.step, "", "perform", f"the coordinator runs {w.action}",
                     {"action": w.action})
    if isinstance(w, d.Execute):
        what = "resumes" if w.reconcile else "runs"
        return Asked(w.step, "", "execute", f"the signer {what} the approved "
                     f"{w.operation.get('op', 'operation')}", {"action": w.operation.get("op")})
    raise AssertionError(f"not a want: {w!r}")


def _ask_text(w: d.Ask) -> str:
    """A person's step in words: its row's `ask` (ceremony.script.step_kinds) over the Ask."""
    if w.kind == "signin":
        missing = w.detail.get("missing") or {}
        if missing:
            need = ", ".join(f"{n} more {r}" for r, n in sorted(missing.items()))
            return f"sign in: {need}"
    if w.kind == "decide":
        return f"the {w.role} decides the exception: retry, accept or abort"
    kind = STEP_KINDS.get(w.kind)
    template = kind.ask if kind is not None and kind.ask else "the {role} acknowledges"
    fields = {"format": "text", **{k: v for k, v in w.detail.items() if v is not None},
              "role": w.role}
    who = [x for x in (w.detail.get("seat"), w.detail.get("apart")) if x]
    return template.format_map(_Blank(fields)) + (f" ({'; '.join(who)})" if who else "")


class _Blank(dict[str, Any]):
    """Detail a template names and the Ask lacks reads as None, as the detail would."""

    def __missing__(self, key: str) -> str:
        return "None"
