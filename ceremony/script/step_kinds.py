"""One row per step action: everything the loader, the machine and the view know about it.

Adding an action is adding a row here (and, if it needs one, the loader's extra check it names or
the coordinator's work for it). The script model's `ACTIONS` and `PARAMETERS`, the schema's
`YIELDS` and `QUORUM_ACTIONS`, the machine's `ACCEPTS` and what its `Performed` yields, and the
view's progress and people's steps are all read from `STEP_KINDS`, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Who carries a step, and so what `Machine.wants()` asks for it:
#: person    an officer acts on their console (`Ask`, answered by the kind's `answer` event);
#: quorum    officers approve a later step's operation (`Plan`, then `RequestApproval`);
#: observe   the coordinator reads a value itself and compares it (`Observe`);
#: perform   the coordinator does the work, no approval needed (`Perform`);
#: operation the signer plans it, a quorum approves the exact plan, the signer runs it
#:           (`Plan`, `RequestApproval`, then `Execute`).
WORK = ("person", "quorum", "observe", "perform", "operation")


@dataclass(frozen=True)
class StepKind:
    action: str
    doc: str  # what the machine does with it (docs/script-format.md's Actions table)
    work: str  # one of WORK
    required: tuple[str, ...] = ()  # parameters the step must have
    optional: tuple[str, ...] = ()  # parameters it may have; any other is an error
    answer: str | None = None  # person steps: the event (by name) that completes the step
    operation: str | None = None  # operation steps: the `op` the signer plans ("purge")
    yields: str | None = None  # the result field whose value the step yields (performed steps)
    yields_format: str | None = None  # the format of the value a reference to it gets
    check: str | None = None  # the loader's further check of this action (a StepChecker method)
    progress: bool = False  # its work reports progress (a bar on every console)
    ask: str | None = None  # how the view words a person's step, over `role` and the Ask's detail

    @property
    def needs_quorum(self) -> bool:
        return self.work == "operation"

    @property
    def waits_for_people(self) -> bool:
        return self.work in ("person", "quorum")


STEP_KINDS: dict[str, StepKind] = {k.action: k for k in (
    StepKind("acknowledge", "the actor confirms on their console", "person",
             answer="Acknowledge", ask="the {role} acknowledges"),
    StepKind("signin", "participants sign in; completes when every role has its minimum, on the "
             "actor's word", "person", answer="Acknowledge",
             ask="the {role} confirms everyone is signed in"),
    StepKind("record", "the actor enters a value, checked against a format", "person",
             ("format",), ("drive", "bag", "equals", "expect"), answer="Record",
             yields_format="(its format)", check="_record",
             ask="the {role} enters the value ({format})"),
    StepKind("verify", "the machine observes a value itself and compares it with the record",
             "observe", ("observe",), ("expect", "value", "drive", "file", "signer"),
             check="_verify"),
    StepKind("hsm.fingerprint", "the signer reports the HSM's identity", "perform",
             (), ("signer",), yields="fingerprint", yields_format="text"),
    StepKind("hsm.list", "the signer lists the keys in the HSM", "perform", (), ("signer",),
             yields="count", yields_format="count"),
    StepKind("hsm.purge", "the signer deletes exactly the keys its key-state source reports "
             "dead (quorum)", "operation", ("quorum",), ("signer",), operation="purge",
             check="_approved", progress=True),
    StepKind("hsm.generate", "the signer generates keys for the policies over a duration "
             "(quorum)", "operation", ("quorum", "duration"), ("policies", "signer"),
             operation="generate", check="_approved", progress=True),
    StepKind("hsm.backup", "the signer writes a password-protected backup and its .sha256sum "
             "(quorum)", "operation", ("quorum", "password"), ("signer",), operation="backup",
             yields="sha256", yields_format="sha256", check="_approved", progress=True),
    StepKind("hsm.restore", "the signer restores a backup read off the `source` drive onto its "
             "token, protected by a password or, for a wrap backup, by the KEK whose shares the "
             "`shares` role's officers bring on their own consoles: the plan lists every key the "
             "backup holds, and only those keys may appear (quorum)", "operation",
             ("quorum", "source"), ("password", "shares", "file", "signer"), operation="restore",
             check="_restore", progress=True),
    StepKind("hsm.kek", "the signer makes the backup key-encryption key of wrap backups inside "
             "the HSM and splits it at once, `threshold` of the `holders` seats' shares rebuilding "
             "it; each share leaves sealed to its holder's console key (quorum)", "operation",
             ("quorum", "holders", "threshold"), ("signer",), operation="kek", yields="kek_id",
             yields_format="text", check="_kek"),
    StepKind("kek.share", "the step's seat, a holder of the KEK made earlier, opens their share "
             "on their own console, writes it down and confirms; the journal records only that "
             "it was handed over", "person", answer="Acknowledge", check="_kek_share",
             ask="the {role} writes down their KEK share from their own console"),
    StepKind("quorum", "officers of a role approve one exact operation from their own consoles",
             "quorum", ("quorum", "count"), check="_quorum"),
    StepKind("drive.insert", "wait for a flash drive by label and record (or check) its serial",
             "perform", ("drive",), yields_format="usb-serial"),
    StepKind("drive.copy", "copy files onto a drive, flushed to the device", "perform",
             ("drive", "source"), check="_drive_copy", progress=True),
    StepKind("drive.verify", "read the files back from the drive and check them with their "
             ".sha256sum", "perform", ("drive",), ("drill", "shares"), check="_drive_verify",
             progress=True),
    StepKind("drive.eject", "unmount and release the drive", "perform", ("drive",)),
    StepKind("seal", "a custodian accepts a sealed tamper-evident bag, its serial and its "
             "contents", "person", ("bag", "serial", "contents"), answer="Record",
             check="_seal", ask="the {role} seals bag {bag} and enters its serial"),
    StepKind("handover", "the actor takes a bag sealed earlier from its holder, reading its "
             "serial back and signing for it", "person", ("bag",), answer="Record",
             check="_handover",
             ask="the {role} takes bag {bag} from {holder} and enters its serial"),
    StepKind("unseal", "the bag's custodian presents it and the actor reads its serial, which "
             "must be the custody record's (this ceremony's, or the previous one's): a bag that "
             "differs stops the ceremony; its contents are then out of the bag", "person",
             ("bag",), ("contents",), answer="Record", check="_unseal",
             ask="the {role} reads bag {bag}'s serial as {holder} presents it"),
    StepKind("transcript", "the printable record of the journal so far, written to a drive, and "
             "its digest", "perform", ("drive",), yields="sha256", yields_format="sha256"),
    StepKind("signoff", "the actor, and every signed-in officer of the roles in `cosigners`, "
             "signs the journal's current checkpoint from their own console", "person", (),
             ("cosigners",), answer="SignOff", check="_signoff",
             ask="the {role} signs the journal checkpoint"),
)}

assert all(k.work in WORK for k in STEP_KINDS.values())
assert all((k.answer is not None) == (k.work == "person") for k in STEP_KINDS.values())
assert all((k.operation is not None) == (k.work == "operation") for k in STEP_KINDS.values())
