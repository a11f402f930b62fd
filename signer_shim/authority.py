"""Who may authorise what on this signer: its own officer roster and quorum rules (pure).

The shim trusts nobody, not even the coordinator: every state-changing operation arrives with
officers' signed approvals, and the shim decides from this file alone whether they make a quorum.
The file is written when the signer is enrolled for a ceremony (it names the ceremony and the
script's SHA-256), and read strictly:

    [ceremony]
    id = "example-tld-2012-keygen-2"
    script_sha256 = "<64 hex digits>"

    [[officers]]
    name = "Sam Admin"                 # a person; two keys of one person count once
    role = "SA"
    key = "ed25519:<base64>"

    [[operations]]
    op = "generate"                    # purge | generate | backup | restore | kek
    step = 33                          # the script step that runs it
    quorums = [{ role = "SA", m = 1 }] # every one must be met by distinct people

`[[operations]]` may be left out (or `operations = []`): a ceremony that changes nothing on
the HSM (an annual audit of the bags only reads the fingerprint and the keys) still has a
signer to look at, and then every state-changing operation is refused.

`check_quorum` is the rule: it takes the request and what the signer remembers (nonces already
used, with the request that used them) and returns the verdict or raises QuorumRefused with a
reason for the officers. It does no I/O and reads no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.approval import Approval, ApprovalRefused, check_approval, load_public_key
from ceremony.digests import operation_digest
from keyrite.configfile import parse_toml
from signer_shim.config import ConfigError

OPERATIONS = ("purge", "generate", "backup", "restore", "kek")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class QuorumRefused(ValueError):
    """The approvals do not let this operation run; the message says why."""


@dataclass(frozen=True)
class Officer:
    name: str
    role: str
    key: str  # ed25519:<base64>


@dataclass(frozen=True)
class Rule:
    op: str
    step: int
    quorums: tuple[tuple[str, int], ...]  # (role, m)


@dataclass(frozen=True)
class Authority:
    ceremony: str
    script_sha256: str
    officers: Mapping[str, Officer]  # by key
    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, path: Path) -> Authority:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror}") from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = "authority") -> Authority:
        doc = parse_toml(text, source)
        _keys(doc, source, "", required={"ceremony", "officers"}, optional={"operations"})
        cer = _table(doc["ceremony"], source, "ceremony")
        _keys(cer, source, "ceremony.", required={"id", "script_sha256"})
        cid = _text(cer["id"], source, "ceremony.id")
        sha = _text(cer["script_sha256"], source, "ceremony.script_sha256")
        if not _HEX64.fullmatch(sha):
            raise ConfigError(f"{source}: ceremony.script_sha256 must be 64 lower-case hex digits")
        officers: dict[str, Officer] = {}
        for i, row in enumerate(_rows(doc["officers"], source, "officers")):
            where = f"officers[{i}]"
            _keys(row, source, f"{where}.", required={"name", "role", "key"})
            o = Officer(*(_text(row[k], source, f"{where}.{k}") for k in ("name", "role", "key")))
            try:
                load_public_key(o.key)
            except ValueError as e:
                raise ConfigError(f"{source}: {where}.key: {e}") from None
            if o.key in officers:
                raise ConfigError(f"{source}: {where}.key is listed twice")
            officers[o.key] = o
        rules = []
        for i, row in enumerate(_rows(doc.get("operations", []), source, "operations",
                                      empty=True)):
            where = f"operations[{i}]"
            _keys(row, source, f"{where}.", required={"op", "step", "quorums"})
            op = _text(row["op"], source, f"{where}.op")
            if op not in OPERATIONS:
                raise ConfigError(f"{source}: {where}.op must be one of {', '.join(OPERATIONS)}")
            step = row["step"]
            if type(step) is not int or step < 1:
                raise ConfigError(f"{source}: {where}.step must be a positive integer")
            quorums = []
            for j, q in enumerate(_rows(row["quorums"], source, f"{where}.quorums")):
                qw = f"{where}.quorums[{j}]"
                _keys(q, source, f"{qw}.", required={"role", "m"})
                m = q["m"]
                if type(m) is not int or m < 1:
                    raise ConfigError(f"{source}: {qw}.m must be a positive integer")
                quorums.append((_text(q["role"], source, f"{qw}.role"), m))
            roles = [r for r, _ in quorums]
            if len(set(roles)) != len(roles):
                raise ConfigError(f"{source}: {where}.quorums names a role twice")
            rules.append(Rule(op, step, tuple(quorums)))
        return cls(cid, sha, officers, tuple(rules))

    def to_toml(self) -> str:
        q = '"'
        out = ["[ceremony]", f"id = {_str(self.ceremony)}",
               f"script_sha256 = {q}{self.script_sha256}{q}", ""]
        for o in self.officers.values():
            out += ["[[officers]]", f"name = {_str(o.name)}", f"role = {_str(o.role)}",
                    f"key = {_str(o.key)}", ""]
        for r in self.rules:
            qs = ", ".join(f"{{ role = {_str(role)}, m = {m} }}" for role, m in r.quorums)
            out += ["[[operations]]", f"op = {_str(r.op)}", f"step = {r.step}",
                    f"quorums = [{qs}]", ""]
        return "\n".join(out)


@dataclass(frozen=True)
class Verdict:
    """Approvals that make a quorum for this exact operation."""

    step: int
    digest: str
    nonces: tuple[str, ...]
    approvers: tuple[str, ...]  # "name (role)", sorted


def check_quorum(
    authority: Authority,
    operation: Mapping[str, Any],
    approvals: Sequence[Mapping[str, Any]],
    *,
    now: float,
    used_nonces: Mapping[str, str],
    request_key: str,
) -> Verdict:
    """Raise QuorumRefused unless `approvals` are enough, valid, fresh and unused for
    `operation`. `used_nonces` maps each nonce already spent to the idempotency key of the
    request that spent it: a retry of that same request may show them again, nothing else may."""
    kind = operation.get("op")
    rules = [r for r in authority.rules if r.op == kind]
    if not rules:
        raise QuorumRefused(f"this signer accepts no {kind!r} operation [A1]")
    if not approvals:
        raise QuorumRefused(f"{kind} needs approvals and none were sent [A1]")
    parsed = []
    for i, a in enumerate(approvals):
        try:
            parsed.append(Approval.from_dict(dict(a)))
        except (KeyError, TypeError, ValueError) as e:
            raise QuorumRefused(f"approval {i + 1} is malformed: {e} [A2]") from None
    steps = sorted({a.step for a in parsed})
    if len(steps) != 1:
        raise QuorumRefused(f"the approvals name different steps ({', '.join(map(str, steps))}) "
                            "[A2]")
    rule = next((r for r in rules if r.step == steps[0]), None)
    if rule is None:
        allowed = ", ".join(str(r.step) for r in rules)
        raise QuorumRefused(f"the approvals are for step {steps[0]}; this signer runs {kind} "
                            f"only at step {allowed} [A2]")
    digest = operation_digest(operation)
    people: dict[str, set[str]] = {}  # role -> names
    seen_keys: set[str] = set()
    seen_nonces: set[str] = set()
    wanted = dict(rule.quorums)
    for a in parsed:
        officer = authority.officers.get(a.key)
        if officer is None:
            raise QuorumRefused(f"an approval is signed by a key not on this signer's roster "
                                f"({a.key[:20]}...) [A1]")
        try:
            check_approval(a, ceremony=authority.ceremony, step=rule.step,
                           script_sha256=authority.script_sha256, operation=digest, now=now)
        except ApprovalRefused as e:
            raise QuorumRefused(f"{officer.name} ({officer.role}): {e}") from None
        if a.key in seen_keys:
            raise QuorumRefused(f"{officer.name} ({officer.role}) approved twice; each officer "
                                "counts once [A1]")
        seen_keys.add(a.key)
        if a.nonce in seen_nonces:
            raise QuorumRefused("two approvals carry the same nonce [A3]")
        seen_nonces.add(a.nonce)
        spent = used_nonces.get(a.nonce)
        if spent is not None and spent != request_key:
            raise QuorumRefused(f"{officer.name} ({officer.role}): this approval was already "
                                f"used (request {spent!r}); a replay is refused [A3]")
        if officer.role not in wanted:
            raise QuorumRefused(f"{officer.name} is {officer.role}; {kind} at step {rule.step} "
                                f"asks for {', '.join(wanted)} [A1]")
        people.setdefault(officer.role, set()).add(officer.name)
    for role, m in rule.quorums:
        have = len(people.get(role, ()))
        if have < m:
            raise QuorumRefused(f"{kind} needs {m} distinct {role} approval(s), has {have} [A1]")
    names = sorted(f"{n} ({role})" for role, group in people.items() for n in group)
    return Verdict(rule.step, digest, tuple(sorted(seen_nonces)), tuple(names))


def _str(s: str) -> str:
    return json.dumps(s)


def _table(v: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    return v


def _rows(v: Any, source: str, where: str, *, empty: bool = False) -> list[dict[str, Any]]:
    if not isinstance(v, list) or not (v or empty) or not all(isinstance(r, dict) for r in v):
        raise ConfigError(f"{source}: {where} must be a {'' if empty else 'non-empty '}list "
                          "of tables")
    return v


def _keys(t: Mapping[str, Any], source: str, prefix: str, *, required: set[str],
          optional: AbstractSet[str] = frozenset()) -> None:
    for k in t:
        if k not in required and k not in optional:
            raise ConfigError(f"{source}: unknown key {prefix}{k}")
    for k in sorted(required):
        if k not in t:
            raise ConfigError(f"{source}: {prefix}{k} is required")


def _text(v: Any, source: str, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{source}: {where} must be a non-empty string")
    return v
