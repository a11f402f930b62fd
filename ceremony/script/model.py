"""The typed, validated form of a ceremony script.

Everything downstream (the machine, the rehearsal, the consoles) reads these frozen values, never
raw TOML: the loader (`ceremony.script.load`) is the one place that knows the file format and
the one place that reports what is wrong with it. See docs/script-format.md for every key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ceremony.durations import Duration
from ceremony.script.step_kinds import STEP_KINDS

#: Every step action a script may name, and what the machine does with it (docs/script-format.md).
ACTIONS: dict[str, str] = {a: k.doc for a, k in STEP_KINDS.items()}

#: What a `verify` step may observe; the machine obtains each value itself, never by typing.
OBSERVATIONS: dict[str, str] = {
    "livecd.sha256": "SHA-256 of the live boot medium (device or image), as colon hex",
    "signer.host_key": "the signer's SSH host key fingerprint, SHA256:... as OpenSSH prints it",
    "signer.role": "what the signer reports itself to be (e.g. standby)",
    "hsm.fingerprint": "the HSM token's identity (docs/signer.md)",
    "hsm.key_count": "the number of keys the HSM lists",
    "drive.serial": "the USB serial of the drive named by the step's `drive`",
    "drive.sha256": "SHA-256 of the file `file` on the drive `drive` (one an earlier ceremony "
                    "wrote, say; without `file`, the only key backup there), as colon hex",
    "backup.sha256": "SHA-256 of the backup file as written",
    "transcript.sha256": "SHA-256 of the printable transcript as written",
}

#: Each action's parameters as (required, optional); any other parameter on the step is an error.
#: A `verify` step's `drive` and `signer` further depend on what it observes (script.schema).
PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    a: (k.required, k.optional) for a, k in STEP_KINDS.items()
}

#: Formats a `record` step may ask for (regular expressions in ceremony.script.formats).
RECORD_FORMATS = ("text", "usb-serial", "bag-serial", "sha256", "datetime")


@dataclass(frozen=True)
class Role:
    name: str  # "KGA", "KSO", ...
    title: str
    duty: str
    min: int  # people who must be signed in before the signin step completes
    max: int  # people who may hold it
    trusted: bool  # untrusted participants show a government ID at sign-in
    observer: bool  # observers never act (witness, auditor)


@dataclass(frozen=True)
class Material:
    item: str
    quantity: int


@dataclass(frozen=True)
class Signer:
    name: str
    role: str | None  # what the signer must report itself to be, e.g. "standby"
    host_key: str | None  # pinned fingerprint (SHA256:... or MD5 colon hex), if known


@dataclass(frozen=True)
class Drive:
    label: str  # "master-copy"
    title: str  # "Master Copy", as written on the drive
    serial: str | None  # expected USB serial, if known before the ceremony


@dataclass(frozen=True)
class Bag:
    label: str
    title: str


@dataclass(frozen=True)
class Password:
    """A password whose copies are kept in bags: one a backup step writes, or one declared on
    its own so that a seal, an unseal or a restore of an earlier ceremony's backup can name it."""

    name: str
    title: str


@dataclass(frozen=True)
class KeySpec:
    role: str  # "KSK" | "ZSK" | "CSK"
    algorithm: str  # "RSA/2048", "ECDSA/P-256"
    lifetime: Duration


@dataclass(frozen=True)
class Policy:
    name: str
    keys: tuple[KeySpec, ...]


@dataclass(frozen=True)
class Quorum:
    id: str
    role: str
    m: int  # distinct people of `role` who must approve
    authorizes: int  # the number of the hsm.* step whose exact operation is approved
    expires: Duration  # how long one approval stays valid
    seats: tuple[str, ...] = ()  # the only seats that may approve (empty: any of the role)
    distinct_from: tuple[int, ...] = ()  # steps whose people may not approve


@dataclass(frozen=True)
class Step:
    n: int
    actor: str  # a role name
    text: str  # the instruction as printed
    action: str  # a key of ACTIONS
    section: str  # the title of its section
    note: str | None = None
    kga_may_complete: bool = False
    seat: str | None = None  # the one seat of the actor's role that may do it (roster's name)
    distinct_from: tuple[int, ...] = ()  # steps whose people may not do this one
    # action parameters; which ones apply is in docs/script-format.md and checked by the loader
    format: str | None = None  # record
    observe: str | None = None  # verify
    expect: str | None = None  # verify: "previous.KEY", "step.N", "signer.NAME.host_key" ...
    value: str | None = None  # verify: a literal expected value
    equals: int | None = None  # record: must equal the value of step N
    drive: str | None = None  # drive.*, verify drive.serial/drive.sha256, transcript, record
    file: str | None = None  # verify drive.sha256, hsm.restore: the file's name on the drive
    bag: str | None = None  # seal, handover, record
    source: str | None = None  # drive.copy: "backup" | "drive:LABEL" | "transcript" | "journal";
    #                            hsm.restore: "drive:LABEL"
    contents: tuple[str, ...] = ()  # seal: "drive:LABEL", "password:NAME", "transcript"
    serial: int | None = None  # seal: the record step that holds the bag's serial
    signer: str | None = None  # hsm.*, verify of signer.*/hsm.*: the only signer if unnamed
    quorum: tuple[str, ...] = ()  # hsm.purge/generate/backup: quorum ids; quorum: one id
    count: int | None = None  # quorum: approvals collected by the end of this step
    duration: Duration | None = None  # hsm.generate
    policies: tuple[str, ...] = ()  # hsm.generate: policy names (empty: all)
    password: str | None = None  # hsm.backup: the material that protects it; hsm.restore: the
    #                              backup's password
    drill: bool = False  # drive.verify: then the restore drill (the backup into a scratch token)
    cosigners: tuple[str, ...] = ()  # signoff: the other roles whose officers sign it too
    holders: tuple[str, ...] = ()  # hsm.kek: the seats handed one KEK share each
    threshold: int | None = None  # hsm.kek: different shares that rebuild the KEK
    shares: str | None = None  # hsm.restore, drive.verify drill: the role bringing KEK shares


@dataclass(frozen=True)
class Section:
    title: str
    estimated: Duration
    note: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Ceremony:
    id: str
    title: str
    version: str
    administrator: str  # the role that oversees (KGA)
    continues: str | None  # the previous ceremony this one continues from
    previous: tuple[str, ...]  # the keys the previous ceremony's record must provide
    estimated: Duration | None


@dataclass(frozen=True)
class Script:
    ceremony: Ceremony
    roles: dict[str, Role]
    may_combine: frozenset[frozenset[str]]  # role pairs one person may hold together
    materials: tuple[Material, ...]
    signers: tuple[Signer, ...]
    drives: dict[str, Drive]
    bags: dict[str, Bag]
    policies: dict[str, Policy]
    quorums: dict[str, Quorum]
    sections: tuple[Section, ...]
    sha256: str  # of the file's bytes: what approvals bind to
    path: str = field(default="<memory>", compare=False)
    passwords: dict[str, Password] = field(default_factory=dict)  # declared in [[passwords]]

    @functools.cached_property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for sec in self.sections for s in sec.steps)

    @functools.cached_property
    def earlier_bags(self) -> tuple[str, ...]:
        """The bags an `unseal` opens that no seal before it in this script seals: the earlier
        ceremony's record must hold them (this one continues it, as the annual audit does)."""
        return tuple(dict.fromkeys(
            str(st.bag) for st in self.steps if st.action == "unseal" and not any(
                s.action == "seal" and s.bag == st.bag and s.n < st.n for s in self.steps)))

    @functools.cached_property
    def _by_number(self) -> dict[int, Step]:
        return {s.n: s for s in self.steps}

    def step(self, n: int) -> Step:
        """Step `n` (KeyError if the script has none). The live coordinator builds a view per
        broadcast and asks this hundreds of times each: a table, not a scan."""
        return self._by_number[n]
