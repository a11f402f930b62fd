"""The rehearsal's signer link: a real `keyrite shim` on 127.0.0.1 over the rehearsal's token,
enrolled for this ceremony, and the coordinator's SSH client to it with the script's pinned host
key. The ceremony then reaches its HSM exactly as a live one does: over SSH, with every quorum
checked again on the signer side.

What enrolment writes (under the work directory's `shim/`): the shim's config, an
authorized_keys file holding the coordinator's SSH key, and the authority file built from the
script (which operation runs at which step, under which quorums) and the roster (the officers'
public keys; a person with two seats is one person).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.roster import Roster
from ceremony.script.model import Script
from coordinator.shim_client import ShimClient
from keyrite.exits import Failure
from signer_shim.authority import Authority, Officer, Rule
from signer_shim.interface import Progress, SignerError
from staging.standup import ShimFiles, ShimProcess, write_shim_files


def authority_for(script: Script, roster: Roster) -> Authority:
    """What the signer will accept in this ceremony, from the script and the roster alone."""
    officers = {o.signing_key: Officer(o.person, o.role, o.signing_key)
                for o in roster.officers.values()}
    by_step: dict[int, list[tuple[str, int]]] = {}
    for q in script.quorums.values():
        by_step.setdefault(q.authorizes, []).append((q.role, q.m))
    rules = tuple(Rule(script.step(n).action.removeprefix("hsm."), n, tuple(qs))
                  for n, qs in sorted(by_step.items()))
    return Authority(script.ceremony.id, script.sha256, officers, rules)


class ShimDied(Exception):  # noqa: N818 (not an Error: the rehearsal's signer crashed)
    """The rehearsal's own shim process died under a request (SIGKILL: a power cut of the
    signer). Not a SignerError: the executor must not journal it as the operation's failure
    (which would stop the ceremony on an exception nobody in a rehearsal decides); the
    rehearsal stops as if it had crashed itself, and `--resume` starts a new shim, which
    reconciles the operation journaled as started against its own journal and the token."""


#: how ShimClient's errors for a link that went away begin (an answer from the shim does not)
LINK_LOST = ("cannot reach the signer", "lost the link to the signer")


class RehearsalShimClient(ShimClient):
    """The coordinator's client, which tells a lost link to a shim that is still running (a
    SignerError, as in a live ceremony) from one whose process is gone (ShimDied)."""

    process: ShimProcess | None = None

    def request(self, method: str, params: Mapping[str, Any] | None = None, *,
                key: str | None = None, progress: Progress | None = None) -> Any:
        try:
            return super().request(method, params, key=key, progress=progress)
        except SignerError as e:
            if self.process is not None and (self.process.proc.poll() is not None
                                             or str(e).startswith(LINK_LOST)):
                try:
                    code = self.process.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    raise e from None  # still running: the signer's own answer
                raise ShimDied(f"the signer shim (pid {self.process.pid}) died with exit "
                               f"status {code} during {method}: {e}") from None
            raise


@dataclass
class SignerLink:
    """The running shim and the client that talks to it; `close()` ends both."""

    files: ShimFiles
    process: ShimProcess
    client: ShimClient

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.process.stop()


def open_link(directory: Path, signer_config: Path, script: Script, roster: Roster,
              pin: str | None) -> SignerLink:
    """Enrol and start the shim, and connect lazily with `pin` (the script's, or when the
    script pins nothing, the key the rehearsal made for its own signer)."""
    files = write_shim_files(directory, signer_config, authority_for(script, roster))
    try:
        process = ShimProcess(files.config, wait=600)  # an earlier shim may be finishing
    except RuntimeError as e:
        raise Failure(str(e)) from None
    client = RehearsalShimClient("127.0.0.1", process.port, client_key=files.client_key,
                                 host_key_pin=pin or files.host_key_pin)
    client.process = process
    return SignerLink(files, process, client)
