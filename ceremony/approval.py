"""Officer approvals: what an officer signs to let one exact HSM operation happen.

An approval binds the ceremony id, the number of the step that will run the operation, the
script's SHA-256, the operation's digest, a nonce of the officer's console and an expiry. The
coordinator's machine and (later) the signer shim check approvals with `check_approval`: both must
refuse the same things for the same reasons, so the rule lives here, once.

Why a text message and not JSON: the signed bytes must be identical wherever they are rebuilt,
and a fixed line format leaves no room for key order or number spelling to differ.
"""

from __future__ import annotations

import base64
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
        raise ApprovalRefused(f"approval is for ceremony {approval.ceremony!r}, not {ceremony!r}")
    if approval.step != step:
        raise ApprovalRefused(f"approval is for step {approval.step}, not step {step}")
    if approval.script_sha256 != script_sha256:
        raise ApprovalRefused("approval is for another version of the script")
    if approval.operation != operation:
        raise ApprovalRefused("approval is for a different operation than the one to run")
    if lapsed(approval, now):
        raise ApprovalRefused(f"approval expired {int(now - approval.expires)} s ago")
    if approval.expires > now + max_lifetime:
        raise ApprovalRefused("approval claims a validity longer than allowed")
    if len(approval.nonce) != 32 or any(c not in "0123456789abcdef" for c in approval.nonce):
        raise ApprovalRefused("approval nonce is not 32 lower-case hex digits")
    try:
        pub = load_public_key(approval.key)
        pub.verify(base64.b64decode(approval.signature, validate=True), approval.message())
    except (InvalidSignature, ValueError) as e:
        raise ApprovalRefused("approval signature does not verify") from e


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
