"""Officer approvals: what an officer signs to let one exact HSM operation happen.

An approval binds the ceremony id, the number of the step that will run the operation, the
script's SHA-256, the operation's digest, a nonce of the officer's console and an expiry. The
coordinator's machine and (later) the signer shim check approvals with `check_approval`: both must
refuse the same things for the same reasons, so the rule lives here, once.

The other things an officer's key signs have their fixed text forms here too, each with its own
domain line so no signature can be read as another kind: a custodian's acceptance of a bag
(`custody_message`) and a sign-in (`signin_message`: by each seat's own key, or by the
administrator vouching for the ID document of a witness or auditor).

Why a text message and not JSON: the signed bytes must be identical wherever they are rebuilt,
and a fixed line format leaves no room for key order or number spelling to differ.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DOMAIN = "keyrite-approval-v1"
#: The longest validity an approval may claim, whatever a script says (clock skew included).
MAX_LIFETIME = 3600


class ApprovalRefused(ValueError):
    """An approval that must not count, with the reason shown to the officers."""


class MalformedApproval(TypeError):
    """Not an approval at all: a field missing, unknown, or of the wrong type."""


def public_key_text(key: Ed25519PublicKey) -> str:
    """`ed25519:<base64 raw>` as rosters carry officer keys."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    if not text.startswith("ed25519:"):
        raise ValueError(f"officer key {text!r} is not of the form ed25519:<base64>")
    raw = base64.b64decode(text[len("ed25519:") :], validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, kw_only=True)
class Approval:
    """One officer's signed approval. `key` names the signer; the roster maps it to a seat."""

    ceremony: str
    step: int
    script_sha256: str
    operation: str  # hex digest of the exact operation
    nonce: str  # 32 hex digits, fresh from the officer's console
    expires: int  # Unix seconds
    key: str  # ed25519:<base64>
    signature: str  # base64

    def message(self) -> bytes:
        return signed_message(
            self.ceremony, self.step, self.script_sha256, self.operation, self.nonce, self.expires
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Approval:
        """Exactly the fields, each of its type: `step` a positive and `expires` a whole
        integer (not a bool, a float or a numeric string: the signed text spells the number,
        and `1.5` or `"60"` would be signed as something no console writes), the rest strings.
        Raises MalformedApproval (a TypeError) naming the field."""
        if not isinstance(d, dict):
            raise MalformedApproval(f"an approval is an object, not {type(d).__name__}")
        fields = cls.__dataclass_fields__
        unknown = sorted(set(d) - set(fields), key=str)
        if unknown:
            raise MalformedApproval(f"approval has an unknown field {str(unknown[0])[:40]!r}")
        for name in fields:
            if name not in d:
                raise MalformedApproval(f"approval has no {name!r}")
            value, want = d[name], _INT_FIELDS.get(name, str)
            if type(value) is not want:
                what = "an integer" if want is int else "a string"
                raise MalformedApproval(f"approval {name!r} must be {what}, not "
                                        f"{type(value).__name__}")
        if d["step"] < 1:
            raise MalformedApproval("approval 'step' must be a positive integer")
        return cls(**{k: d[k] for k in fields})


#: The approval fields that are integers; every other field is a string.
_INT_FIELDS: dict[str, type] = {"step": int, "expires": int}


def signed_message(
    ceremony: str, step: int, script_sha256: str, operation: str, nonce: str, expires: int
) -> bytes:
    return (
        f"{DOMAIN}\nceremony {ceremony}\nstep {step}\nscript {script_sha256}\n"
        f"operation {operation}\nnonce {nonce}\nexpires {expires}\n"
    ).encode()


def sign_approval(
    key: Ed25519PrivateKey,
    *,
    ceremony: str,
    step: int,
    script_sha256: str,
    operation: str,
    expires: int,
    nonce: str | None = None,
) -> Approval:
    """What an officer's console does when the officer approves (after showing the operation)."""
    nonce = nonce or secrets.token_hex(16)
    msg = signed_message(ceremony, step, script_sha256, operation, nonce, expires)
    return Approval(
        ceremony=ceremony, step=step, script_sha256=script_sha256, operation=operation,
        nonce=nonce, expires=expires, key=public_key_text(key.public_key()),
        signature=base64.b64encode(key.sign(msg)).decode(),
    )


def lapsed(approval: Approval, now: float) -> bool:
    """Whether `approval` no longer counts at `now`: the one expiry rule, for the machine, the
    view and the daemon alike (valid while now < expires)."""
    return approval.expires <= now


def nonce_key(key: str, nonce: str) -> str:
    """What makes an approval single-use: the signing key and the nonce together (the
    machine's replay check and the daemon's lapse records name an approval by it)."""
    return f"{key}|{nonce}"


def check_approval(
    approval: Approval,
    *,
    ceremony: str,
    step: int,
    script_sha256: str,
    operation: str,
    now: float,
    max_lifetime: int = MAX_LIFETIME,
) -> None:
    """Raise ApprovalRefused unless `approval` is a valid signature for exactly this operation now.

    Counting distinct people, roster membership and replayed nonces are the caller's: they need
    state this function does not hold.
    """
    if approval.ceremony != ceremony:
        raise ApprovalRefused(f"approval is for ceremony {approval.ceremony!r}, not {ceremony!r} "
                              "[A2]")
    if approval.step != step:
        raise ApprovalRefused(f"approval is for step {approval.step}, not step {step} [A2]")
    if approval.script_sha256 != script_sha256:
        raise ApprovalRefused("approval is for another version of the script [A2]")
    if approval.operation != operation:
        raise ApprovalRefused("approval is for a different operation than the one to run [A2]")
    if lapsed(approval, now):
        raise ApprovalRefused(f"approval expired {int(now - approval.expires)} s ago [A2]")
    if approval.expires > now + max_lifetime:
        raise ApprovalRefused("approval claims a validity longer than allowed [A2]")
    if len(approval.nonce) != 32 or any(c not in "0123456789abcdef" for c in approval.nonce):
        raise ApprovalRefused("approval nonce is not 32 lower-case hex digits")
    try:
        pub = load_public_key(approval.key)
        pub.verify(base64.b64decode(approval.signature, validate=True), approval.message())
    except (InvalidSignature, ValueError) as e:
        raise ApprovalRefused("approval signature does not verify [A2]") from e


CUSTODY_DOMAIN = "keyrite-custody-v1"
#: The kinds of custody acceptance: a custodian takes a bag as it is sealed, or from its holder.
CUSTODY_KINDS = ("seal", "handover")


def custody_message(ceremony: str, step: int, script_sha256: str, bag: str, serial: str,
                    contents: list[str] | tuple[str, ...], kind: str = "seal",
                    giver: str | None = None) -> bytes:
    """What a custodian signs when they take a bag: this bag, with this serial and these
    contents, at this step of this ceremony; for a hand-over, also that they take it from the
    seat `giver`.

    A seal's message is the one signed since custody was first signed (no kind line), so journals
    written then still verify; a hand-over's second line is `kind handover`, where a seal's is
    `ceremony`, so neither acceptance can be read as the other.
    """
    if kind not in CUSTODY_KINDS:
        raise ValueError(f"custody kind {kind!r} is not one of {', '.join(CUSTODY_KINDS)}")
    if (kind == "handover") != (giver is not None):
        raise ValueError("a hand-over, and only a hand-over, names the seat it is taken from")
    head = f"{CUSTODY_DOMAIN}\n" + ("kind handover\n" if kind == "handover" else "")
    tail = f"from {giver}\n" if giver is not None else ""
    return (
        f"{head}ceremony {ceremony}\nstep {step}\nscript {script_sha256}\n"
        f"bag {bag}\nserial {serial}\ncontents {' '.join(contents)}\n{tail}"
    ).encode()


def sign_custody(key: Ed25519PrivateKey, **fields: Any) -> str:
    return base64.b64encode(key.sign(custody_message(**fields))).decode()


def key_fingerprint(key: str) -> str:
    """An officer's Ed25519 key (`ed25519:<base64>`, as the roster holds it) as OpenSSH prints a
    key's fingerprint: `SHA256:` and the base64 (unpadded) SHA-256 of the key's SSH wire form, so
    the same key exported for SSH shows the same text under `ssh-keygen -l`. Raises ValueError
    for text that is not an Ed25519 key."""
    raw = load_public_key(key).public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = b"ssh-ed25519"
    blob = len(name).to_bytes(4, "big") + name + len(raw).to_bytes(4, "big") + raw
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


SIGNIN_DOMAIN = "keyrite-signin-v1"
#: The ID documents the administrator records when they sign in a participant of an untrusted
#: role (a witness, an auditor) after checking it: its type and only its last characters.
ID_DOCUMENTS = ("passport", "national-id", "driving-licence", "other")
#: At most this many of the document number's last characters are recorded, never more: the
#: journal is copied to auditors and printed, and a full number is nobody's business there.
ID_DIGITS_MAX = 4
#: How far the time a sign-in was signed at may be from the coordinator's stamp on it: the room's
#: laptops keep their own time (nothing sets their clocks), and a person types a passphrase or two.
SIGNIN_LEEWAY = 300


def id_digits_problem(digits: object) -> str | None:
    """Why `digits` cannot be recorded as an ID document's last characters, or None: one to
    ID_DIGITS_MAX ASCII digits or capital letters (a national ID may end in a letter), never
    more, so a full document number is refused, not cut."""
    if not isinstance(digits, str) or not digits:
        return "the ID document's last digits are missing"
    if len(digits) > ID_DIGITS_MAX:
        return (f"record only the ID document's last {ID_DIGITS_MAX} digits, never the whole "
                f"number ({len(digits)} characters given)")
    if not all(c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" for c in digits):
        return "the ID document's last digits are digits or capital letters only"
    return None


def signin_message(ceremony: str, script_sha256: str, person: str,
                   seats: list[str] | tuple[str, ...], at: int, *, by: str | None = None,
                   id_document: str | None = None, id_digits: str | None = None) -> bytes:
    """What is signed when a person signs in for `seats`, at `at` (whole Unix seconds, the
    signer's clock): by each seat's own key (`kind own`), or, for a participant of an untrusted
    role, by the administrator's seat `by`, who adds the ID document they checked (`kind
    vouched`: its type, one of ID_DOCUMENTS, and its last characters). The second line says which,
    so neither can be read as the other; the domain is this message's own, so no approval, custody
    acceptance or checkpoint signature is a sign-in.

        keyrite-signin-v1
        kind own
        ceremony second-key-generation
        script <sha256 hex>
        person p-kso1
        seats KSO1 DSO1
        at 1796657636
        [by KGA                        (kind vouched only)
         id passport 1234]
    """
    vouched = by is not None
    if vouched != (id_document is not None) or vouched != (id_digits is not None):
        raise ValueError("a vouched sign-in, and only one, names who vouches and the ID document")
    if type(at) is not int:
        raise ValueError("a sign-in's time is whole Unix seconds")
    if vouched and id_document not in ID_DOCUMENTS:
        raise ValueError(f"ID document {id_document!r} is not one of {', '.join(ID_DOCUMENTS)}")
    if vouched and (problem := id_digits_problem(id_digits)) is not None:
        raise ValueError(problem)
    words = [ceremony, script_sha256, person, *seats, *((by,) if vouched else ())]
    if not seats or any(not w or any(c.isspace() for c in w) for w in words):
        raise ValueError("a sign-in names its ceremony, script, person and seats as single words")
    tail = f"by {by}\nid {id_document} {id_digits}\n" if vouched else ""
    return (
        f"{SIGNIN_DOMAIN}\nkind {'vouched' if vouched else 'own'}\nceremony {ceremony}\n"
        f"script {script_sha256}\nperson {person}\nseats {' '.join(seats)}\nat {at}\n{tail}"
    ).encode()


def sign_signin(key: Ed25519PrivateKey, **fields: Any) -> str:
    """`key`'s signature (base64) over `signin_message(**fields)`."""
    return base64.b64encode(key.sign(signin_message(**fields))).decode()


def verify_signature(key: str, signature: object, message: bytes) -> bool:
    """Whether `signature` (base64 text) is `key`'s (`ed25519:<base64>`) Ed25519 signature over
    `message`; anything malformed is simply not."""
    if not isinstance(signature, str):
        return False
    try:
        load_public_key(key).verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
