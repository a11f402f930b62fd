"""What the coordinator may ask of a signer, as plain values.

Three things implement it: `signer_shim.pkcs11.signer.Pkcs11Signer` (PKCS#11, on the signer host),
`signer_shim.opendnssec.signer.OdsSigner` (OpenDNSSEC's tools, on the signer host) and
`coordinator.shim_client.ShimClient` (the coordinator's side: the same calls over SSH to a shim that
runs one of the other two and checks every quorum itself). Operations are planned first (so
officers can approve the exact operation, shown in full), then executed with their approvals.
`execute` is idempotent on the operation: called again after a crash it reconciles against the
HSM's inventory and never does the work twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ceremony.approval import Approval

#: progress(done, total, what): called during long work, e.g. (37, 85, "generated 37 of 85 keys")
Progress = Callable[[int, int, str], None]


class SignerError(RuntimeError):
    """The signer could not do what was asked; the message says why, for the officers."""


@dataclass(frozen=True)
class KeyInfo:
    locator: str  # 32 lower-case hex digits, also CKA_ID (16 bytes) and CKA_LABEL
    type: str  # "RSA/2048", "ECDSA/P-256"


@dataclass(frozen=True)
class Inventory:
    repository: str  # the token label, as ods-hsmutil names the repository
    keys: tuple[KeyInfo, ...]  # sorted by locator

    def render(self) -> str:
        """The same layout as `ods-hsmutil list`."""
        lines = [f"Listing keys in repository: {self.repository}",
                 f"{len(self.keys)} keys found.", ""]
        lines.append(f"{'Repository':<16}{'ID':<34}Type")
        lines.append(f"{'----------':<16}{'--':<34}----")
        lines += [f"{self.repository:<16}{k.locator:<34}{k.type}" for k in self.keys]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PolicyKeys:
    """One policy key as the script declares it, handed to plan_generate."""

    policy: str
    role: str  # KSK | ZSK | CSK
    algorithm: str  # "RSA/2048" | "ECDSA/P-256"
    lifetime_seconds: int


class Signer(Protocol):
    def info(self) -> dict[str, Any]:
        """{"name", "role" (e.g. "standby"), "host_key" (SHA256:...), "host_key_md5" (MD5:..),
        "backend", "repository"}"""

    def fingerprint(self) -> str:
        """The token's identity, 10 groups of 4 hex digits (definition in docs/signer.md)."""

    def inventory(self) -> Inventory: ...

    def plan_purge(self) -> dict[str, Any]:
        """{"op": "purge", "token": fingerprint, "delete": [locators, sorted]}"""

    def plan_generate(self, keys: Sequence[PolicyKeys], duration: str) -> dict[str, Any]:
        """{"op": "generate", "token", "duration", "batches": [{"policy", "role", "algorithm",
        "lifetime_seconds", "zones", "unused", "count", "locators": [...]}]}: count =
        max(0, ceil(duration / lifetime) * zones - unused); locators are chosen at planning
        time, so a retry after a crash generates exactly the missing ones."""

    def plan_backup(self, date: str) -> dict[str, Any]:
        """{"op": "backup", "token", "file": "key-backup-YYYY-MM-DD.tar.gz"}; refused if that
        file (or its .sha256sum) already exists."""

    def put_input(self, name: str, data: bytes, offset: int, size: int,
                  sha256: str) -> dict[str, Any]:
        """One chunk (at `offset`) of backup `name`, `size` bytes whose SHA-256 is `sha256`,
        handed to the signer to restore: {"name", "size", "received"}."""

    def plan_restore(self, name: str, sha256: str) -> dict[str, Any]:
        """{"op": "restore", "token", "file", "sha256", "backup_token", "repository",
        "keys": [{"locator", "label", "type", "public_key_sha256"}]}: the handed-over backup
        onto this token, every key it holds listed; refused if the token holds a key the
        backup lacks (a restore replaces the token)."""

    def execute(
        self,
        operation: Mapping[str, Any],
        approvals: Sequence[Approval],
        progress: Progress | None = None,
        *,
        secrets: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Carry out a planned operation. Returns a result dict (see docs/signer.md):

        purge    {"deleted": [...], "before": n, "after": n}
        generate {"generated": [...], "before": n, "after": n, "added": k, "removed": 0}
        backup   {"file", "sha256", "sha256sum_file", "size"}
        restore  {"file", "restored", "before", "after", "added", "removed": 0, "fingerprint"}
                 (a wrap backup's adds "method": "wrap", "kek_id", "kek_imported")
        kek      {"kek_id", "scheme": "SLIP-39", "threshold", "shares", "holders": [seats],
                  "sealed": [{"seat", "box"}]}

        `secrets` carries what must never be journaled, logged or shown: a backup and a restore
        need {"password": the device-backup password}; the restore of a wrap backup needs
        {"shares": [boxes sealed to share_key()]}; a kek operation needs none. Approvals are
        recorded with the operation.
        """

    def read_output(self, name: str) -> bytes:
        """A file the signer wrote to its output directory (backups and their .sha256sum)."""

    def read_output_chunk(self, name: str, offset: int, length: int) -> tuple[int, bytes]:
        """`read_output(name)`'s size and its bytes from `offset`, at most `length` of them
        (none past the end): what the shim answers a `read_output` request with, reading only
        that chunk."""

    def restore_drill(self, name: str, password: str | None = None,
                      shares: Sequence[str] | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
        """Restore backup `name` into a scratch token and compare it with the live token:
        {"match", "live", "restored", "missing", "extra", "fingerprint_match"}. Exactly one of
        `password` (a token-directory backup) and `shares` (a wrap backup: the KSOs' shares
        sealed to share_key())."""

    def plan_kek(self, threshold: int, holders: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """{"op": "kek", "token", "threshold", "holders": [{"seat", "key"}]}: the backup KEK's
        creation under the wrap method, share i to be sealed to holders[i]["key"] (a Z85
        Curve25519 public key); refused where the keys cannot be wrapped or a KEK exists."""

    def share_key(self) -> str:
        """The signer's own Curve25519 public key (Z85), to which shares brought to a wrap
        restore or drill are sealed."""

    def close(self) -> None: ...
