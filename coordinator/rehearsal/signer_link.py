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

from dataclasses import dataclass
from pathlib import Path

from ceremony.roster import Roster
from ceremony.script.model import Script
from coordinator.shim_client import ShimClient
from keyrite.exits import Failure
from signer_shim.authority import Authority, Officer, Rule
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
    client = ShimClient("127.0.0.1", process.port, client_key=files.client_key,
                        host_key_pin=pin or files.host_key_pin)
    return SignerLink(files, process, client)
