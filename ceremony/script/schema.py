"""Every table and key a ceremony script may hold, every action's parameters, and what each value
reference yields: the rules as data.

The loader reads with these tables and `ceremony.script.reference` renders them into
docs/script-format.md, so what the docs promise is what the loader checks.
"""

from __future__ import annotations

from ceremony.script.kinds import (
    array,
    boolean,
    choice,
    duration,
    host_key_pin,
    integer,
    one_or_more,
    pattern,
    pin_or_previous,
    text,
)
from ceremony.script.model import ACTIONS, OBSERVATIONS, PARAMETERS, RECORD_FORMATS
from ceremony.script.step_kinds import STEP_KINDS
from ceremony.script.tables import Key, Table, named_tables, table, tables

#: Ceremony ids, drive and bag labels, quorum ids, password names.
LABEL = r"[a-z0-9][a-z0-9-]*"
#: Role names.
ROLE = r"[A-Z][A-Z0-9]*"
#: Signer and policy names.
NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"
#: Keys of the previous ceremony's record.
PREVIOUS_KEY = r"[a-z][a-z0-9_]*"

KEY_ROLES = ("KSK", "ZSK", "CSK")
ALGORITHMS = ("RSA/1024", "RSA/2048", "RSA/4096", "ECDSA/P-256", "ECDSA/P-384")

#: The forms of a `verify` step's `expect` (and of nothing else). A step number is at most 19
#: digits, as a TOML integer is (a longer one would reach int()'s 4300-digit limit).
REFERENCE = (
    rf"previous\.{PREVIOUS_KEY}|step\.[1-9][0-9]{{0,18}}|signer\.{NAME}\.(?:host_key|role)"
    rf"|drive\.{LABEL}\.serial"
)
SOURCE = rf"backup|transcript|journal|drive:{LABEL}"
CONTENT = rf"drive:{LABEL}|password:{LABEL}|transcript"
FILE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # a file name on a drive: no path, no leading dot

#: The value format each observation is compared in (`ceremony.script.formats`).
OBSERVATION_FORMATS: dict[str, str] = {
    "livecd.sha256": "sha256",
    "signer.host_key": "host-key",
    "signer.role": "text",
    "hsm.fingerprint": "text",
    "hsm.key_count": "count",
    "drive.serial": "usb-serial",
    "drive.sha256": "sha256",
    "backup.sha256": "sha256",
    "transcript.sha256": "sha256",
}

#: Parameters of a `verify` step that depend on what it observes: (required, optional).
OBSERVATION_PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "livecd.sha256": ((), ()),
    "signer.host_key": ((), ("signer",)),
    "signer.role": ((), ("signer",)),
    "hsm.fingerprint": ((), ("signer",)),
    "hsm.key_count": ((), ("signer",)),
    "drive.serial": (("drive",), ()),
    "drive.sha256": (("drive",), ("file",)),
    "backup.sha256": ((), ()),
    "transcript.sha256": ((), ()),
}

#: Actions whose steps yield a value a later `step.N` reference or `equals` can name, and the
#: value's format (a `record` step yields its own `format`).
YIELDS: dict[str, str] = {a: k.yields_format for a, k in STEP_KINDS.items() if k.yields_format}

#: Actions a quorum may authorize: the HSM operations that change state.
QUORUM_ACTIONS = tuple(a for a, k in STEP_KINDS.items() if k.needs_quorum)

#: Actions that talk to a signer and so take `signer` (default: the only signer declared).
SIGNER_ACTIONS = tuple(a for a, (req, opt) in PARAMETERS.items() if "signer" in req + opt)

assert set(OBSERVATION_FORMATS) == set(OBSERVATION_PARAMETERS) == set(OBSERVATIONS)

CEREMONY = Table("[ceremony]", (
    Key("id", pattern(LABEL, "a ceremony id"), "names the ceremony in journals and approvals"),
    Key("title", text(), "as printed on the transcript"),
    Key("version", text(), "the script's version, a string (`\"74\"`)"),
    Key("administrator", pattern(ROLE, "a role name"),
        "the declared, non-observer role that oversees and records exceptions (KGA)"),
    Key("continues", text(), "the ceremony whose record this one continues", required=False,
        default=None),
    Key("previous", array(pattern(PREVIOUS_KEY, "a record key")),
        "keys the previous ceremony's record must provide; `previous.KEY` names them",
        required=False, default=(), default_doc="`[]`"),
    Key("estimated", duration(), "how long the whole ceremony should take", required=False,
        default=None),
))

ROLE_TABLE = Table("[roles.NAME]", (
    Key("title", text(), "the role's full name"),
    Key("duty", text(), "what the role does in the ceremony"),
    Key("min", integer(0), "people holding it who must be signed in when signin completes"),
    Key("max", integer(1), "people who may hold it; at least `min`"),
    Key("trusted", boolean(), "untrusted participants show a government ID at sign-in",
        required=False, default=True, default_doc="`true`"),
    Key("observer", boolean(), "observers never act: no step, quorum or administrator is theirs",
        required=False, default=False, default_doc="`false`"),
))

SEPARATION = Table("[separation]", (
    Key("may_combine", array(array(pattern(ROLE, "a role name"), exact=2, doc="[ROLE, ROLE] pair"),
                             doc="array of `[ROLE, ROLE]` pairs"),
        "pairs of declared roles one person may hold together; any other two are exclusive",
        required=False, default=(), default_doc="`[]`"),
))

MATERIAL = Table("[[materials]]", (
    Key("item", text(), "what is brought to the room"),
    Key("quantity", integer(1), "how many"),
))

SIGNER = Table("[[signers]]", (
    Key("name", pattern(NAME, "a signer name"), "how steps and references name it"),
    Key("role", text(), "what the signer must report itself to be (`signer.role`), e.g. standby",
        required=False, default=None),
    Key("host_key", host_key_pin(),
        "its pinned SSH host key: the link refuses any other key before sending anything, and "
        "`signer.NAME.host_key` is what a verify step compares the live key with",
        required=False, default=None),
))

DRIVE = Table("[[drives]]", (
    Key("label", pattern(LABEL, "a drive label"), "how steps name it"),
    Key("title", text(), "as written on the drive"),
    Key("serial", pin_or_previous("usb-serial", "a USB serial"),
        "its USB serial, if known before the ceremony (from the previous ceremony's record: "
        "`previous.KEY`)", required=False, default=None),
))

BAG = Table("[[bags]]", (
    Key("label", pattern(LABEL, "a bag label"), "how steps name it"),
    Key("title", text(), "as written on the bag"),
))

PASSWORD = Table("[[passwords]]", (
    Key("name", pattern(LABEL, "a password name"), "how seals (`password:NAME`), unseals, "
        "backups and restores name it"),
    Key("title", text(), "what the password protects, as written on its copies"),
))

KEY_SPEC = Table("[[policies.keys]]", (
    Key("role", choice(KEY_ROLES), "the key's DNSSEC role"),
    Key("algorithm", choice(ALGORITHMS), "algorithm and size"),
    Key("lifetime", duration(), "how long one key is used; sets how many keys a duration needs"),
))

POLICY = Table("[[policies]]", (
    Key("name", pattern(NAME, "a policy name"), "as the signer's key-state source names it"),
    Key("keys", tables(KEY_SPEC, min_len=1), "the keys the policy uses"),
))

QUORUM = Table("[[quorums]]", (
    Key("id", pattern(LABEL, "a quorum id"), "how steps name it"),
    Key("role", pattern(ROLE, "a role name"), "the declared, non-observer role that approves"),
    Key("m", integer(1), "distinct people of `role` who must approve; at most the role's `max`"),
    Key("authorizes", integer(1), "the number of the hsm.purge, hsm.generate, hsm.backup or "
        "hsm.restore step whose exact operation is approved; that step lists this quorum"),
    Key("expires", duration(), "how long one approval stays valid"),
    Key("seats", array(pattern(NAME, "a seat"), min_len=1),
        "the only seats of `role` that may approve (the roster's names: `KSO1`), at least `m` "
        "of them", required=False, default=(), default_doc="any seat of the role"),
    Key("distinct_from", array(integer(1), min_len=1),
        "earlier steps whose people may not approve: nobody who acted on (or approved) one of "
        "them is counted here", required=False, default=(), default_doc="none"),
))

_P = {"required": False, "parameter": True}
PARAMETER_KEYS = (
    Key("format", choice(RECORD_FORMATS, doc="string: a record format (see Value formats)"),
        "record: the format the entered value must fit", **_P),
    Key("observe", choice(OBSERVATIONS, doc="string: an observation (see Observations)"),
        "verify: what the machine observes", **_P),
    Key("expect", pattern(REFERENCE, "a reference", "string: a reference (see References)"),
        "verify: the reference the observation must equal (see References); record: the "
        "reference the entered value must equal (a difference stops the ceremony, both "
        "shown)", **_P),
    Key("value", text(), "verify: a literal the observation must equal, in the observation's "
        "format", **_P),
    Key("equals", integer(1), "record: the entered value must equal what step N yielded", **_P),
    Key("drive", pattern(LABEL, "a drive label"), "a declared drive", **_P),
    Key("file", pattern(FILE, "a file name (letters, digits, '.', '_', '-'; no path)"),
        "verify drive.sha256 and hsm.restore: the file's name on the drive, or `previous.KEY` "
        "for the name the previous record gives (`previous.transcript_file`); default: the only "
        "key backup there, `key-backup-*.tar.gz`", **_P),
    Key("bag", pattern(LABEL, "a bag label"), "a declared bag; handover: one an earlier seal step "
        "seals; unseal: one in custody, sealed earlier or at the previous ceremony", **_P),
    Key("source", pattern(SOURCE, "a copy source", "string: a copy source"),
        "drive.copy: `backup`, `transcript`, `journal` or `drive:LABEL` (another drive); "
        "hsm.restore: `drive:LABEL`, the drive holding the backup", **_P),
    Key("contents", array(pattern(CONTENT, "a bag content"), min_len=1,
                          doc="non-empty array of strings: bag contents"),
        "seal: `drive:LABEL`, `password:NAME` (an hsm.backup password or a declared one) or "
        "`transcript`; "
        "unseal: what the bag must hold, as its custody record lists it",
        default=(), **_P),
    Key("serial", integer(1), "seal: the earlier record step (format bag-serial, same bag) that "
        "holds the bag's serial", **_P),
    Key("signer", pattern(NAME, "a signer name"),
        "a declared signer; default: the only one declared (resolved by the loader)", **_P),
    Key("quorum", one_or_more(pattern(LABEL, "a quorum id")),
        "declared quorum ids; a quorum step names exactly one", default=(), **_P),
    Key("count", integer(1), "quorum: approvals collected by the end of this step, 1..m", **_P),
    Key("duration", duration(), "hsm.generate: the period to generate keys for (`P14M`)", **_P),
    Key("policies", array(pattern(NAME, "a policy name"), min_len=1),
        "hsm.generate: declared policy names; default: all", default=(), **_P),
    Key("password", pattern(LABEL, "a password name"),
        "hsm.backup: the name of the pre-generated password that protects the backup; "
        "hsm.restore: the name of the password of the backup restored (a backup step's, or one "
        "in `[[passwords]]`)", **_P),
    Key("drill", boolean(),
        "drive.verify: after the read-back check, restore the backup into a scratch token and "
        "compare its keys with the live HSM's (the restore drill); any difference stops the "
        "ceremony", default=False, default_doc="`false`", **_P),
    Key("holders", array(pattern(NAME, "a seat"), min_len=2),
        "hsm.kek: the seats (as the roster names them: `KSO1`) each handed one share of the "
        "backup KEK, sealed to that seat's console key", default=(), **_P),
    Key("threshold", integer(2, 16), "hsm.kek: how many different shares rebuild the KEK (2..the "
        "number of holders, at most 16)", **_P),
    Key("shares", pattern(ROLE, "a role name"), "hsm.restore of a wrap backup, and a drill "
        "(`drive.verify`, `drill = true`) of one: the role whose officers each bring their KEK "
        "share on their own console, as many different people as the KEK's threshold; instead "
        "of a password", **_P),
    Key("cosigners", array(pattern(ROLE, "a role name"), min_len=1),
        "signoff: other acting roles whose every signed-in officer signs the same checkpoint "
        "from their own console; the step completes when all have", default=(),
        default_doc="none: the actor alone", **_P),
)

STEP = Table("[[sections.steps]]", (
    Key("n", integer(1), "the step's number: unique, strictly increasing through the file"),
    Key("actor", pattern(ROLE, "a role name"), "the declared, non-observer role that does it"),
    Key("text", text(), "the instruction as printed"),
    Key("action", choice(ACTIONS, "an action:", doc="string: an action (see Actions)"),
        "what the machine does (see Actions)"),
    Key("note", text(), "shown under the instruction", required=False, default=None),
    Key("kga_may_complete", boolean(), "the administrator may complete it for an absent actor",
        required=False, default=False, default_doc="`false`"),
    Key("seat", pattern(NAME, "a seat"), "a person's step that only this seat (of the actor's "
        "role, as the roster names it: `DSO3`) may do, e.g. a bag's custodian; the roster must "
        "hold it", required=False, default=None),
    Key("distinct_from", array(integer(1), min_len=1), "a person's step that nobody who acted "
        "on (or approved) one of these earlier steps may do: two different people, whatever "
        "roles they hold", required=False, default=(), default_doc="none"),
    *PARAMETER_KEYS,
))

SECTION = Table("[[sections]]", (
    Key("title", text(), "unique; each step's `section`"),
    Key("estimated", duration(), "how long the section should take"),
    Key("note", text(), "shown under the title", required=False, default=None),
    Key("steps", tables(STEP, min_len=1), "the section's steps, in order"),
))

DOCUMENT = Table("top level", (
    Key("ceremony", table(CEREMONY), "what the ceremony is"),
    Key("roles", named_tables(ROLE_TABLE, pattern(ROLE, "a role name"), min_len=1),
        "the roles, one table each, named `[A-Z][A-Z0-9]*`"),
    Key("separation", table(SEPARATION), "which roles one person may combine", required=False,
        default=None, default_doc="no pairs"),
    Key("materials", tables(MATERIAL), "what is brought to the room", required=False,
        default=(), default_doc="none"),
    Key("signers", tables(SIGNER), "the signing hosts", required=False, default=(),
        default_doc="none"),
    Key("drives", tables(DRIVE), "the flash drives", required=False, default=(),
        default_doc="none"),
    Key("bags", tables(BAG), "the tamper-evident bags", required=False, default=(),
        default_doc="none"),
    Key("passwords", tables(PASSWORD), "passwords declared on their own (an hsm.backup step's "
        "`password` is declared by the step)", required=False, default=(), default_doc="none"),
    Key("policies", tables(POLICY), "the key policies hsm.generate follows", required=False,
        default=(), default_doc="none"),
    Key("quorums", tables(QUORUM), "the approvals hsm.purge/generate/backup/restore need",
        required=False, default=(), default_doc="none"),
    Key("sections", tables(SECTION, min_len=1), "the procedure"),
))

#: Every table, in the order the docs list them.
TABLES = (DOCUMENT, CEREMONY, ROLE_TABLE, SEPARATION, MATERIAL, SIGNER, DRIVE, BAG, PASSWORD,
          POLICY, KEY_SPEC, QUORUM, SECTION, STEP)

assert {k.name for k in PARAMETER_KEYS} == {p for r, o in PARAMETERS.values() for p in r + o}


def step_parameters(action: str, observe: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (required, optional) parameters of a step; for a `verify` step whose `observe` is not
    known (missing or wrong), the observation-dependent ones are all optional."""
    required, optional = PARAMETERS[action]
    if action != "verify" or observe not in OBSERVATION_PARAMETERS:
        return required, optional
    dependent = {p for r, o in OBSERVATION_PARAMETERS.values() for p in r + o}
    extra_required, extra_optional = OBSERVATION_PARAMETERS[observe]
    return required + extra_required, (
        tuple(p for p in optional if p not in dependent) + extra_optional
    )
