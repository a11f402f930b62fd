"""The assurance case (docs/assurance.md): for each numbered claim, a test that it holds and a
test that it breaks when its enforcement is taken out.

Each `test_A<n>_breaks_without_its_enforcement` monkeypatches the one function (or check) the
document names to a permissive version and shows the attack it stops now succeeding: a forged
approval reaching the HSM, a rewritten journal verifying, a signature taken on a terminal too
small to show it. That the attack fails with the real function is `test_A<n>_holds`. The last
tests keep the document and this file in step: the same claims, and each claim's number in the
messages of the files that enforce it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import re
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine import machine as machine_module
from ceremony.machine.machine import Machine
from coordinator import shim_client
from coordinator.bus import CommandRefused
from coordinator.bus import protocol as bus_protocol
from coordinator.journal import Journal, generate_key, verify_journal
from coordinator.journal import chain as chain_module
from coordinator.journal.file import JournalWriteFailed
from coordinator.live import translate as translate_module
from coordinator.live.translate import Invalid, translate
from coordinator.runner import Runner
from keyrite import diskio, plainjson, sealing
from signer_shim import authority as authority_module
from signer_shim import protocol
from signer_shim import server as server_module
from signer_shim.authority import Verdict
from signer_shim.request_journal import RequestJournal
from signer_shim.server import Shim
from tests import machine_helpers as h
from tests.machine_helpers import at_kso_quorum, drive, refused, roster, send, sign_in, start
from tests.shim_helpers import approve, as_dicts, cast_authority
from tests.test_fuzz_shim import Obliging

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "assurance.md"


# -- the shim: quorum, binding, nonces (A1-A3) ----------------------------------------------------
PURGE = {"op": "purge", "token": "d34d", "delete": ["00" * 16]}


class Recording(Obliging):
    """A signer that does whatever it is asked, and remembers every operation that reached it."""

    def __init__(self) -> None:
        self.executed: list[dict[str, Any]] = []

    def execute(self, op: dict[str, Any], approvals: Any, progress: Any,
                secrets: Any = None) -> dict[str, Any]:
        self.executed.append(op)
        return {"done": op["op"]}


SHIMS: list[Shim] = []


@pytest.fixture(autouse=True)
def _close_queues() -> Any:
    yield
    while SHIMS:
        SHIMS.pop().queue.close()


def shim(tmp_path: Path, signer: Recording | None = None) -> tuple[Shim, Recording]:
    signer = signer or Recording()
    tmp_path.mkdir(parents=True, exist_ok=True)
    s = Shim(signer, cast_authority(), RequestJournal(tmp_path / "requests.jsonl"))  # type: ignore[arg-type]
    SHIMS.append(s)
    return s, signer


def execute(s: Shim, op: dict[str, Any], approvals: list[dict[str, Any]],
            key: str = "k1") -> dict[str, Any]:
    line = protocol.Request("r1", key, "execute", {"operation": op, "approvals": approvals})
    return protocol.parse_reply(asyncio.run(s.answer(line.to_line())))


def forged() -> list[dict[str, Any]]:
    """A purge approved by a key the signer's authority does not list (the coordinator's own,
    say), dressed as the SA's."""
    return as_dicts(approve(PURGE, "sa1", signer=Ed25519PrivateKey.generate()))


def test_A1_holds(tmp_path: Path) -> None:
    s, signer = shim(tmp_path)
    answer = execute(s, PURGE, forged())
    assert answer["error"]["type"] == "QuorumRefused"
    assert "not on this signer's roster" in answer["error"]["message"]
    assert "[A1]" in answer["error"]["message"]
    assert signer.executed == []
    s2, signer2 = shim(tmp_path / "other")
    assert "[A1]" in execute(s2, PURGE, as_dicts(approve(PURGE, "w1")))["error"]["message"]
    assert signer2.executed == []  # a witness is on the roster, but not a role the rule asks for


def test_A1_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    def trusting(authority: Any, operation: Any, approvals: Any, **_: Any) -> Verdict:
        return Verdict(31, "", tuple(a["nonce"] for a in approvals), ("whoever",))

    monkeypatch.setattr(server_module, "check_quorum", trusting)
    s, signer = shim(tmp_path)
    assert execute(s, PURGE, forged())["result"] == {"done": "purge"}
    assert signer.executed == [PURGE]  # the forged approval reached the HSM


def altered() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The SA approved the purge of one key; the operation sent deletes two."""
    more = {**PURGE, "delete": ["00" * 16, "11" * 16]}
    return more, as_dicts(approve(PURGE, "sa1"))


def test_A2_holds(tmp_path: Path) -> None:
    s, signer = shim(tmp_path)
    more, approvals = altered()
    message = execute(s, more, approvals)["error"]["message"]
    assert "a different operation than the one to run [A2]" in message
    assert signer.executed == []
    s2, signer2 = shim(tmp_path / "step")  # the same operation, approved for another step
    message = execute(s2, PURGE, as_dicts(approve(PURGE, "sa1", step=33)))["error"]["message"]
    assert "[A2]" in message and signer2.executed == []
    s3, signer3 = shim(tmp_path / "expired")
    message = execute(s3, PURGE, as_dicts(approve(PURGE, "sa1", expires_in=-5)))["error"][
        "message"]
    assert "expired" in message and "[A2]" in message and signer3.executed == []


def test_A2_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(authority_module, "check_approval", lambda *a, **kw: None)
    s, signer = shim(tmp_path)
    more, approvals = altered()
    assert execute(s, more, approvals)["result"] == {"done": "purge"}
    assert signer.executed == [more]  # two keys deleted on an approval for one


def test_A3_holds(tmp_path: Path) -> None:
    s, signer = shim(tmp_path)
    approvals = as_dicts(approve(PURGE, "sa1"))
    assert execute(s, PURGE, approvals, key="k1")["result"] == {"done": "purge"}
    assert execute(s, PURGE, approvals, key="k1")["result"] == {"done": "purge"}  # a retry
    message = execute(s, PURGE, approvals, key="k2")["error"]["message"]
    assert "a replay is refused [A3]" in message
    restarted, _ = shim(tmp_path, signer)  # the spent nonces are read back from its journal
    message = execute(restarted, PURGE, approvals, key="k3")["error"]["message"]
    assert "a replay is refused [A3]" in message
    assert signer.executed == [PURGE]  # once
    m, w = at_kso_quorum(have=1)  # the machine, too, takes one approval once
    [first] = [e for e in w.accepted if isinstance(e, ev.Approve) and e.seat.startswith("KSO")]
    refused(m, first, "replayed nonce) [A3]")


def test_A3_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    real = server_module.check_quorum

    def forgetful(authority: Any, operation: Any, approvals: Any, **kw: Any) -> Verdict:
        return real(authority, operation, approvals, **{**kw, "used_nonces": {}})

    monkeypatch.setattr(server_module, "check_quorum", forgetful)
    s, signer = shim(tmp_path)
    approvals = as_dicts(approve(PURGE, "sa1"))
    assert execute(s, PURGE, approvals, key="k1")["result"] == {"done": "purge"}
    assert execute(s, PURGE, approvals, key="k2")["result"] == {"done": "purge"}
    assert signer.executed == [PURGE, PURGE]  # one approval, spent twice


# -- the machine: who acts (A4, A5) ---------------------------------------------------------------
def at_kga_step() -> tuple[Machine, Any]:
    m, w = start()
    drive(m, w, until=2)
    send(m, w, sign_in(w, "bob"))  # SA1
    send(m, w, sign_in(w, "erin"))
    drive(m, w, until=18)  # the KGA records a drive's serial
    return m, w


def test_A4_holds() -> None:
    m, w = at_kga_step()
    refused(m, ev.Record(at=w.at(), seat="SA1", value="AA11BB22"), "step 18 is for the KGA",
            "[A4]")
    assert 18 not in m.completed


def test_A4_breaks_without_its_enforcement(monkeypatch) -> None:
    def anyone(self: Machine, step: Any, seat: str) -> None:
        self._signed_in(seat)  # type: ignore[attr-defined]
        self._state.acted.setdefault(step.n, []).append(self._state.signed_in[seat])  # type: ignore[attr-defined]

    monkeypatch.setattr(Machine, "_actor", anyone)
    m, w = at_kga_step()
    send(m, w, ev.Record(at=w.at(), seat="SA1", value="AA11BB22"))
    assert 18 in m.completed  # the sysadmin recorded what the administrator must


def carol_as_kso_and_sa() -> tuple[Machine, Any, ev.SignIn]:
    m, w = start()
    return m, w, sign_in(w, "carol", seats=("KSO1", "SA2"))  # signed by both seats' keys


def test_A5_holds() -> None:
    m, w, e = carol_as_kso_and_sa()
    refused(m, e, "separation of duty", "KSO and SA", "[A5]")
    assert "SA2" not in m.signed_in


def test_A5_breaks_without_its_enforcement(monkeypatch) -> None:
    monkeypatch.setattr(machine_module, "separation_breach", lambda script, roles: None)
    m, w, e = carol_as_kso_and_sa()
    send(m, w, e)
    assert {"KSO1", "SA2"} <= set(m.signed_in)  # one person holds a key and runs the HSM


# -- the bus: whose command (A6) ------------------------------------------------------------------
def test_A6_holds() -> None:
    # the console whose CURVE key is enrolled for KSO1 (carol) asks to act as KSO2 (dave)
    with pytest.raises(Invalid, match=r"may not act as KSO2 \[A6\]"):
        translate(roster(), "KGA", "KSO1", {"type": "acknowledge", "seat": "KSO2"}, 0.0)
    assert translate(roster(), "KGA", "KSO1", {"type": "acknowledge", "seat": "DSO2"}, 0.0) \
        == ev.Acknowledge(at=0.0, seat="DSO2")  # carol's other seat


def test_A6_breaks_without_its_enforcement(monkeypatch) -> None:
    monkeypatch.setattr(translate_module, "acting_seat",
                        lambda roster, officer, body: body.get("seat", officer))
    e = translate(roster(), "KGA", "KSO1", {"type": "acknowledge", "seat": "KSO2"}, 0.0)
    assert e == ev.Acknowledge(at=0.0, seat="KSO2")  # carol's console speaks for dave


# -- the journal (A7) -----------------------------------------------------------------------------
def rewritten(tmp_path: Path) -> Path:
    """A journal whose entry 7 was changed and every later link recomputed: only the signed
    checkpoint at entry 9 (over entries 0-8) can tell."""
    from tests.test_journal import make_journal, read_lines, relink, write_lines
    from tests.test_journal_verify import replace_record

    path = tmp_path / "ceremony.journal"
    make_journal(path, generate_key(), n=12, checkpoints=(5, 9))
    lines = read_lines(path)
    replace_record(lines, 7, step=70)
    write_lines(path, relink(lines, 8))
    return path


def test_A7_holds(tmp_path: Path) -> None:
    report = verify_journal(rewritten(tmp_path))
    assert not report.ok and report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (9, "root")
    assert "[A7]" in report.problem.reason


def test_A7_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    real = chain_module.Chain._checkpoint

    class Agreeing:
        def __init__(self, root: bytes) -> None:
            self._root = root

        def root(self) -> bytes:
            return self._root

    def no_root_check(self: Any, pos: int, record: dict[str, Any]) -> None:
        signed = chain_module.Checkpoint.parse(
            chain_module.open_note(record["note"], self.verifiers).text)
        tree, self.tree = self.tree, Agreeing(signed.root)  # whatever the entries hash to
        try:
            real(self, pos, record)
        finally:
            self.tree = tree

    monkeypatch.setattr(chain_module.Chain, "_checkpoint", no_root_check)
    report = verify_journal(rewritten(tmp_path))
    assert report.ok, report.problem  # the rewritten history verifies


# -- the signer link (A8) -------------------------------------------------------------------------
class Impostor:
    """An SSH server that is not the signer (its own host key) but speaks the shim's protocol:
    it answers `info` with whatever it likes, and remembers every line it was sent."""

    def __init__(self, tmp_path: Path) -> None:
        import threading

        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        client = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = tmp_path / "coordinator_key"
        client.write_private_key(self.client_key)
        self.authorized = asyncssh.import_authorized_keys(
            client.export_public_key().decode())
        self.received: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.acceptor = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        self.port = int(self.acceptor.sockets[0].getsockname()[1])

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[self.host_key],
            authorized_client_keys=self.authorized, process_factory=self._session,
            encoding=None, sftp_factory=None)

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        async for line in process.stdin:
            if not line:  # the client closed
                break
            self.received.append(line)
            rid = protocol.parse_request(line).id
            process.stdout.write(b'{"v": 1, "id": "' + rid.encode() + b'", "result": '
                                 b'{"name": "signer", "host_key": "whatever it says"}}\n')

    def client(self, pin: str) -> shim_client.ShimClient:
        return shim_client.ShimClient("127.0.0.1", self.port, client_key=self.client_key,
                                      host_key_pin=pin, timeout=10)

    async def _close(self) -> None:
        self.acceptor.close()
        await self.acceptor.wait_closed()

    def close(self) -> None:
        """Stop listening on the loop's own thread (asyncio's server is not thread-safe: closed
        from here, it raced the loop and failed in one full-suite run), then stop the loop."""
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def impostor(tmp_path: Path) -> Any:
    server = Impostor(tmp_path)
    yield server
    server.close()


#: The signer's host key, as the script pins it.
SIGNER_PIN = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")


def test_A8_holds(impostor: Impostor) -> None:
    with impostor.client(SIGNER_PIN) as c, pytest.raises(shim_client.HostKeyMismatch) as e:
        c.request("info")
    assert "[A8]" in str(e.value)
    assert e.value.presented == impostor.host_key.get_fingerprint("sha256")
    assert impostor.received == []  # nothing was sent to it, not even the authentication
    with impostor.client(impostor.host_key.get_fingerprint("sha256")) as c:  # pinned: it talks
        assert c.request("info")["name"] == "signer"


def test_A8_breaks_without_its_enforcement(impostor: Impostor, monkeypatch) -> None:
    monkeypatch.setattr(shim_client, "matches", lambda pin, key: True)
    with impostor.client(SIGNER_PIN) as c:
        assert c.request("info")["host_key"] == "whatever it says"  # believed
    assert len(impostor.received) == 1  # and the coordinator's request went to the impostor


# -- KEK shares (A9) ------------------------------------------------------------------------------
def old_share_for_new_kek() -> tuple[str, str]:
    """A share sealed to the signer's key for an earlier KEK, brought to this KEK's restore."""
    public, secret = sealing.new_pair()
    box = sealing.seal(public, b"share of the old KEK", sealing.share_context("kek-2025", "signer"))
    return secret, box


def test_A9_holds() -> None:
    secret, box = old_share_for_new_kek()
    with pytest.raises(sealing.SealError, match=r"not for this purpose \[A9\]"):
        sealing.open_sealed(secret, box, sealing.share_context("kek-2026", "signer"))
    _, coordinator = sealing.new_pair()  # the coordinator relays the box and cannot open it
    with pytest.raises(sealing.SealError, match=r"\[A9\]"):
        sealing.open_sealed(coordinator, box, sealing.share_context("kek-2025", "signer"))
    assert sealing.open_sealed(secret, box, sealing.share_context("kek-2025", "signer")) \
        == b"share of the old KEK"


def test_A9_breaks_without_its_enforcement(monkeypatch) -> None:
    monkeypatch.setattr(sealing, "share_context", lambda kek_id, recipient: "keyrite kek share")
    secret, box = old_share_for_new_kek()
    assert sealing.open_sealed(secret, box, sealing.share_context("kek-2026", "signer")) \
        == b"share of the old KEK"  # taken for another KEK


# -- the signing prompt (A10) ---------------------------------------------------------------------
PGDN = "\x1b[6~"


def sign_on_a_small_terminal() -> tuple[list[dict[str, Any]], str]:
    from tests.test_console_approval import purge_of, sized

    view, now = purge_of(4)
    with sized(view, "SA1", now, (79, 24)) as c:
        c.press("p", *[PGDN] * 10)
        text = " ".join(c.text().split())
        return c.press("my passphrase\r"), text


def test_A10_holds() -> None:
    sent, text = sign_on_a_small_terminal()
    assert "smaller than the 80x24 a signature needs" in text and "[A10]" in text
    assert sent == []


def test_A10_breaks_without_its_enforcement(monkeypatch) -> None:
    from consoles import screen

    monkeypatch.setattr(screen, "SIGN_MIN", (40, 10))
    sent, _ = sign_on_a_small_terminal()
    assert [c["passphrase"] for c in sent] == ["my passphrase"]  # signed, part of it unseen


# -- the backup password (A11) --------------------------------------------------------------------
def typo_at_the_backup(tmp_path: Path) -> Any:
    """The SA, asked for the device-backup password, types one that is not the pre-generated
    one (the live coordinator, its verifier recorded before the ceremony)."""
    from tests.test_backup_password import TYPO, _backup_execute, _live, _secret

    live, journal, _ = _live(tmp_path, _backup_execute)
    try:
        _secret(live, "SA1", TYPO)
    except CommandRefused as e:
        return live, journal, str(e)
    return live, journal, None


def test_A11_holds(tmp_path: Path) -> None:
    live, journal, refusal = typo_at_the_backup(tmp_path)
    assert refusal is not None and "not the pre-generated device-backup password" in refusal
    assert "[A11]" in refusal
    assert live.world.secrets == {}  # nothing for the backup to encrypt under
    [record] = [e.record for e in journal.entries() if e.record.get("type") == "refused"]
    assert "[A11]" in record["reason"]


def test_A11_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    from keyrite.passwords import Verifier
    from tests.test_backup_password import TYPO

    monkeypatch.setattr(Verifier, "matches", lambda self, password: True)
    live, _, refusal = typo_at_the_backup(tmp_path)
    assert refusal is None
    assert live.world.secrets == {"device-backup": TYPO}  # the backup would be sealed under it


# -- signed sign-in (A12) -------------------------------------------------------------------------
def carol_signed_in_by_another_key() -> tuple[Machine, Any, ev.SignIn]:
    """Carol's sign-in as KSO1 and DSO2, signed with KSO2's key but naming KSO1's fingerprint:
    what anyone without KSO1's key (the coordinator, say) could send."""
    import dataclasses

    from ceremony.approval import key_fingerprint
    from tests.machine_helpers import signed_sign_in

    m, w = start()
    other = signed_sign_in(m.script, "carol", "Carol", "R", ("KSO1", "DSO2"), w.at(),
                           signers=("KSO2", "DSO2"))
    fps = tuple(key_fingerprint(m.roster.officers[s].signing_key) for s in ("KSO1", "DSO2"))
    return m, w, dataclasses.replace(other, fingerprints=fps)


def test_A12_holds() -> None:
    m, w, forged_sign_in = carol_signed_in_by_another_key()
    refused(m, forged_sign_in, "not signed with KSO1's enrolled key", "[A12]")
    assert "KSO1" not in m.signed_in


def test_A12_breaks_without_its_enforcement(monkeypatch) -> None:
    monkeypatch.setattr(Machine, "_identity", lambda self, e: None)
    m, w, forged_sign_in = carol_signed_in_by_another_key()
    send(m, w, forged_sign_in)
    assert m.signed_in["KSO1"] == "carol"  # signed in without her key


# -- the officers' copy of the record (A13) -------------------------------------------------------
def a_fork_offered(tmp_path: Path) -> tuple[Any, Any, str, list[str]]:
    """A console accepted the checkpoint over 11 entries; the coordinator, with its own key,
    rewrites entries 5 onwards, signs a checkpoint over 15 and sends a proof from 11."""
    from consoles.cosign import Cosigner
    from tests.test_cosign import _fork, _grow, _journal, _proof

    j = _journal(tmp_path / "j", 6)
    j.checkpoint("t")
    _grow(j, 3)
    console = Cosigner(j.verifier)
    accepted = console.offer(j.checkpoint("t"), [])
    f = _fork(j.path, tmp_path / "f", 5, 10)
    return console, accepted, f.checkpoint("t"), _proof(f.path, 11, 15)


def test_A13_holds(tmp_path: Path) -> None:
    from consoles.cosign import Refusal

    console, accepted, note, proof = a_fork_offered(tmp_path)
    with pytest.raises(Refusal, match=r"the journal FORKED \[A13\]"):
        console.offer(note, proof)
    assert console.accepted is accepted  # it cosigns nothing of the rewritten history


def test_A13_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    from consoles import cosign

    monkeypatch.setattr(cosign, "verify_consistency", lambda *a: True)
    console, accepted, note, proof = a_fork_offered(tmp_path)
    taken = console.offer(note, proof)
    assert taken.checkpoint.size == 15 and console.accepted is taken  # the fork is cosignable


# -- custody of bags (A14) ------------------------------------------------------------------------
def carols_bag_signed_by_alice() -> tuple[Machine, Any, ev.Record]:
    """Mini step 25: DSO2 (Carol) seals the backup bag. Alice (DSO1) signs the acceptance and
    sends it as Carol's."""
    import dataclasses

    from tests.machine_helpers import seal

    m, w = start()
    drive(m, w, until=25)
    contents = m.script.step(25).contents
    forged = seal(w, "DSO1", 25, "backup", contents, "TEB000BACKUP")
    return m, w, dataclasses.replace(forged, seat="DSO2")


def test_A14_holds() -> None:
    m, w, forged_seal = carols_bag_signed_by_alice()
    refused(m, forged_seal, "DSO2 takes bag backup by signing for it", "[A14]")
    assert "backup" not in m.custody


def test_A14_breaks_without_its_enforcement(monkeypatch) -> None:
    class AnySignature:
        def verify(self, signature: bytes, message: bytes) -> None:
            return None

    monkeypatch.setattr(machine_module, "load_public_key", lambda text: AnySignature())
    m, w, forged_seal = carols_bag_signed_by_alice()
    send(m, w, forged_seal)
    assert m.custody["backup"]["custodian"] == "DSO2"  # Carol holds a bag she never signed for


# -- the document and this file agree -------------------------------------------------------------
# -- durability and bounded input (A15, A16) ----------------------------------------------------
class Sending:
    """The runner's world at a purge whose quorum is complete: it records what reaches the
    signer; nobody answers anything else (the run stops after the work)."""

    def __init__(self, m: Machine, w: Any) -> None:
        self.m, self.w = m, w
        self.sent: list[int] = []

    def observe(self, want: Any) -> str:
        return h.observation(self.w, want)

    def perform(self, want: Any, progress: Any) -> dict[str, Any]:
        return h.perform(self.w, want)

    def plan(self, want: Any) -> dict[str, Any]:
        return h.plan(self.m, self.w, want)

    def now(self) -> float:
        return self.w.at()

    def execute(self, want: d.Execute, progress: Any) -> dict[str, Any]:
        self.sent.append(want.step)
        return h.execute(self.w, want)

    def people(self, want: Any, context: Any) -> list[Any]:
        return []


def _at_the_purge(tmp_path: Path) -> tuple[Runner, Sending, Path]:
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Execute))
    path = tmp_path / "journal.jsonl"
    journal = Journal.create(path, key=Ed25519PrivateKey.generate(), name="keyrite.test/a15",
                             origin="keyrite.test/a15", genesis_record={"type": "genesis"})
    world = Sending(m, w)
    return Runner(m, journal, world, _Quiet(), str), world, path  # type: ignore[arg-type]


class _Quiet:
    def step(self, machine: Any) -> None: ...
    def notice(self, machine: Any, notice: Any) -> None: ...
    def progress(self, done: int, total: int, what: str) -> None: ...
    def approval(self, machine: Any, want: Any) -> None: ...


def test_A15_holds(tmp_path: Path) -> None:
    runner, world, path = _at_the_purge(tmp_path)
    before = path.read_bytes()
    full = diskio.Faults().fail("write", errno.ENOSPC, times=None, path=str(path))
    with diskio.injected(full), pytest.raises(JournalWriteFailed, match=r"not recorded \[A15\]"):
        runner.run()
    assert world.sent == []
    assert path.read_bytes() == before


def test_A15_breaks_without_its_enforcement(tmp_path: Path, monkeypatch) -> None:
    def careless(self: Journal, data: bytes, last: Any) -> None:
        with contextlib.suppress(OSError):
            diskio.write_all(self._fd, data)
        self._end += len(data)
        self._acked = (last.seq + 1, last.line_hash)

    monkeypatch.setattr(Journal, "_commit", careless)
    runner, world, path = _at_the_purge(tmp_path)
    before = path.read_bytes()
    full = diskio.Faults().fail("write", errno.ENOSPC, times=None, path=str(path))
    with diskio.injected(full):
        runner.run()
    assert world.sent != []  # the purge reached the signer...
    assert path.read_bytes() == before  # ...and the journal holds nothing of it


DEEP = b'{"v":1,"kind":"command","id":"1","body":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
LONG_INT = b'{"id":"r1","op":"info","n":' + b"7" * 5000 + b"}"


def test_A16_holds() -> None:
    with pytest.raises(bus_protocol.ProtocolError, match=r"nested deeper than \d+ \[A16\]"):
        bus_protocol.decode(DEEP)
    with pytest.raises(protocol.ProtocolError, match=r"5000 digits, beyond .*\[A16\]"):
        protocol.parse_request(LONG_INT)


def test_A16_breaks_without_its_enforcement(monkeypatch) -> None:
    monkeypatch.setattr(plainjson, "loads", lambda data, limits: json.loads(data))
    with pytest.raises(RecursionError):
        bus_protocol.decode(DEEP)
    with pytest.raises(ValueError) as e:
        protocol.parse_request(LONG_INT)
    assert not isinstance(e.value, protocol.ProtocolError)


def doc_claims() -> dict[int, list[str]]:
    """Each claim's number and the files its "Enforced by" line names."""
    text = DOC.read_text()
    claims: dict[int, list[str]] = {}
    for m in re.finditer(r"^## A(\d+)\b.*?(?=^## |\Z)", text, re.M | re.S):
        enforced = re.search(r"^\*\*Enforced by\*\*:(.*?)\n\n", m.group(0), re.M | re.S)
        assert enforced, f"A{m.group(1)} has no 'Enforced by' line"
        claims[int(m.group(1))] = re.findall(r"`([\w/]+\.py)", enforced.group(1))
    return claims


def test_the_document_lists_exactly_the_claims_tested_here() -> None:
    tested = {int(n) for n in re.findall(r"^def test_A(\d+)_holds", Path(__file__).read_text(),
                                         re.M)}
    broken = {int(n) for n in re.findall(r"^def test_A(\d+)_breaks_without_its_enforcement",
                                         Path(__file__).read_text(), re.M)}
    claims = doc_claims()
    assert set(claims) == tested == broken
    assert sorted(claims) == list(range(1, len(claims) + 1))


def test_each_claims_number_is_in_the_messages_of_the_files_that_enforce_it() -> None:
    for n, files in doc_claims().items():
        assert files, f"A{n} names no file"
        for f in files:
            assert f"[A{n}]" in (ROOT / f).read_text(), f"[A{n}] is not in {f}"


def test_no_source_file_names_a_claim_the_document_does_not_tie_to_it() -> None:
    claims = doc_claims()
    for package in ("ceremony", "keyrite", "coordinator", "consoles", "signer_shim", "staging"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            for n in {int(x) for x in re.findall(r"\[A(\d+)\]", path.read_text())}:
                assert n in claims, f"{name} names [A{n}], which docs/assurance.md lacks"
                assert name in claims[n], f"{name} names [A{n}], whose claim does not list it"
