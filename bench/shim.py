"""Signer benchmarks: key-generation throughput of keyrite against raw python-pkcs11.

For RSA-2048 and ECDSA P-256, in keys per second, each path on its own fresh SoftHSM2 token:

1. baseline: one process, one session, a bare loop of C_GenerateKeyPair making stored token
   keys with the worker's own attributes (signer_shim.pkcs11.worker.Worker._generate_one), timed
   around the loop only (no process start, no login);
2. keyrite, workers = 1: one planned generate operation executed through the shim over SSH on
   127.0.0.1 (staging.standup, coordinator.shim_client.ShimClient), timed around `execute`:
   quorum check, journals, listings, per-key checks and the key-state update included;
3. keyrite, workers = 2: the same with the generate spread over two worker processes
   (signer_shim.pkcs11.pool), helper start-up included.

`--local` measures (2) and (3) through Pkcs11Signer in this process instead of over SSH.
The paths take turns, a round of keys each (--rounds), so that other processes' load falls on
all of them alike. Ratios are against (1) measured in the same run; targets: >= 0.95x with one
worker, >= 1.7x for RSA with two (on two cores). RSA key times vary with the primes found, so
a run of n keys carries a spread of its own, printed as +-% (standard error of the baseline's
mean key time).
With --local, each path's CPU time (user + system: this process, the workers, the helpers) is
shown as well, and its ratio to the baseline's (baseline CPU / ours, per key as keys are equal):
on a loaded machine, where wall-clock rates swing by 2x, it shows what keyrite's own work
costs; with two workers it counts both cores, so it is no measure of their speed-up.
Prints numbers, asserts nothing. Usage: python bench/shim.py [--rsa N] [--ec N] [--rounds R]
[--local] [--json] [--dir DIR]
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
# (the imports below wait for the path)
# Run as `python bench/shim.py`, sys.path[0] is bench/, where copy.py (the drive-copy bench)
# would shadow the stdlib `copy` for every module imported after it: the repository root goes
# there instead, before anything else is imported.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import Approval, public_key_text, sign_approval
from ceremony.digests import operation_digest
from ceremony.durations import YEAR
from signer_shim.authority import Authority, Officer, Rule
from signer_shim.config import SignerConfig
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import PolicyKeys
from signer_shim.keystate import KeyState, save_keystate
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import child_env, create_token
from signer_shim.planning import new_locator

ALGORITHMS = {"rsa": "RSA/2048", "ec": "ECDSA/P-256"}
CEREMONY, SCRIPT_SHA256, STEP = "bench", "00" * 32, 33
ROOT = Path(__file__).resolve().parent.parent


def baseline_child() -> int:
    """In a child with SOFTHSM2_CONF set (SoftHSM reads it once per process): params as JSON on
    the first stdin line (the PIN stays off the command line), then one line per round with the
    number of keys to make, each answered with the loop's key times as a JSON line."""
    from signer_shim.pkcs11.worker import Worker

    p = json.loads(sys.stdin.readline())
    w = Worker(p["module"], p["label"])
    w.open(p["pin"])
    for line in sys.stdin:
        times = []
        c0 = time.process_time()
        for _ in range(int(line)):
            loc = new_locator()
            t0 = time.perf_counter()
            w._generate_one(loc, p["algorithm"])
            times.append(time.perf_counter() - t0)
        print(json.dumps({"times": times, "cpu": time.process_time() - c0}), flush=True)
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) so far of this process, its reaped children and `pids`."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Baseline:
    def __init__(self, workdir: Path, alg: str) -> None:
        token = create_token(workdir / "hsm", "bench")
        self.proc = subprocess.Popen([sys.executable, __file__, "--baseline-child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT, env=child_env(token.softhsm2_conf))
        self._send({"module": str(token.module), "label": token.label, "pin": token.user_pin,
                    "algorithm": alg})
        self.times: list[float] = []
        self.cpu = 0.0

    def _send(self, value: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(value) + "\n")
        self.proc.stdin.flush()

    def round(self, n: int) -> float:
        assert self.proc.stdout is not None
        self._send(n)
        got = json.loads(self.proc.stdout.readline())
        self.times += got["times"]
        self.cpu += got["cpu"]
        return float(sum(got["times"]))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def signer_setup(workdir: Path, alg: str, zones: int, workers: int) -> tuple[Path, PolicyKeys]:
    """A token, a key state with `zones` zones and no keys, and the signer config: with a
    one-year lifetime, planning round r for P{r}Y then asks for exactly `zones` new keys."""
    token = create_token(workdir / "hsm", "bench")
    state = workdir / "state"
    state.mkdir()
    config = SignerConfig(name="bench", role="standby", module=token.module,
                          softhsm2_conf=token.softhsm2_conf, token_label=token.label,
                          user_pin=token.user_pin, state_dir=state,
                          host_key_path=ensure_host_key(state / "ssh_host_ed25519_key"),
                          workers=workers)
    names = tuple(f"zone{i:04d}.example" for i in range(zones))
    save_keystate(config.keystate_path, KeyState({"bench": names}, {}))
    pk = PolicyKeys(policy="bench", role="ZSK", algorithm=alg, lifetime_seconds=YEAR)
    return config.save(workdir / "signer.toml"), pk


def approvals(officer: Ed25519PrivateKey, op: dict[str, Any]) -> list[Approval]:
    return [sign_approval(officer, ceremony=CEREMONY, step=STEP, script_sha256=SCRIPT_SHA256,
                          operation=operation_digest(op), expires=int(time.time()) + 3600)]


class Keyrite:
    """One signer (and shim) for all rounds of one path; each round is one generate operation,
    planned untimed and executed timed."""

    def __init__(self, workdir: Path, alg: str, per_round: int, workers: int,
                 local: bool) -> None:
        self.stack = ExitStack()
        config_path, self.pk = signer_setup(workdir, alg, per_round, workers)
        self.officer = Ed25519PrivateKey.generate()
        self.per_round, self.rounds, self.cpu, self.local = per_round, 0, 0.0, local
        if local:
            self.signer: Any = self.stack.enter_context(
                Pkcs11Signer(SignerConfig.load(config_path)))
        else:
            from coordinator.shim_client import ShimClient
            from staging.standup import ShimProcess, write_shim_files

            key = public_key_text(self.officer.public_key())
            authority = Authority(CEREMONY, SCRIPT_SHA256, {key: Officer("Bench", "SA", key)},
                                  (Rule("generate", STEP, (("SA", 1),)),))
            files = write_shim_files(workdir / "shim", config_path, authority)
            shim = self.stack.enter_context(ShimProcess(files.config))
            self.signer = self.stack.enter_context(ShimClient(
                "127.0.0.1", shim.port, client_key=files.client_key,
                host_key_pin=files.host_key_pin))
        how = "in-process Pkcs11Signer" if local else "shim over SSH"
        self.path = f"keyrite workers={workers} ({how})"

    def round(self, n: int) -> float:
        assert n == self.per_round
        self.rounds += 1
        op = self.signer.plan_generate([self.pk], f"P{self.rounds}Y")
        count = sum(len(b["locators"]) for b in op["batches"])
        assert count == n, f"planned {count} keys, wanted {n}"
        pids = [self.signer.worker_pid] if self.local else []
        c0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        result = self.signer.execute(op, approvals(self.officer, op))
        seconds = time.perf_counter() - t0
        self.cpu += cpu_seconds(pids) - c0
        assert result["added"] == n, result
        return seconds

    def close(self) -> None:
        self.stack.close()


def measure(base: Path, name: str, n: int, rounds: int, local: bool) -> list[dict[str, Any]]:
    """The three paths in turns, `rounds` rounds of n/rounds keys each, so they share the
    machine's weather (other processes' load swings a 2-core machine's rates by 2x)."""
    alg = ALGORITHMS[name]
    per = max(1, n // rounds)
    dirs = [base / f"{name}-{w}" for w in (0, 1, 2)]
    for d in dirs:
        d.mkdir()
    paths: list[Any] = [Baseline(dirs[0], alg)]
    try:
        paths += [Keyrite(dirs[w], alg, per, w, local) for w in (1, 2)]
        seconds = [0.0, 0.0, 0.0]
        for _ in range(rounds):
            for i, path in enumerate(paths):
                seconds[i] += path.round(per)
    finally:
        for path in paths:
            path.close()
    times = paths[0].times
    spread = statistics.stdev(times) / statistics.fmean(times) / len(times) ** 0.5
    keys = per * rounds
    rows = [{"path": "baseline (raw python-pkcs11, one session)", "keys": keys,
             "seconds": seconds[0], "spread": spread, "cpu": paths[0].cpu}]
    rows += [{"path": p.path, "keys": keys, "seconds": t, "cpu": p.cpu if local else None}
             for p, t in zip(paths[1:], seconds[1:], strict=True)]
    for r in rows:
        r["rate"] = keys / r["seconds"]
        r["ratio"] = r["rate"] / rows[0]["rate"]
        r["cpu_ratio"] = rows[0]["cpu"] / r["cpu"] if r["cpu"] else None
    rows[1]["target"], rows[2]["target"] = 0.95, (1.7 if name == "rsa" else None)
    return rows


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"cores": os.cpu_count(), "via": "local" if args.local else "ssh",
                              "rounds": args.rounds}
    for name, n in (("rsa", args.rsa), ("ec", args.ec)):
        if n > 0:
            report[ALGORITHMS[name]] = measure(base, name, n, args.rounds, args.local)
    return report


def show(report: dict[str, Any]) -> None:
    via = "over SSH on 127.0.0.1" if report["via"] == "ssh" else "in-process"
    print(f"{report['cores']} cores; keyrite measured {via}; paths in turns, "
          f"{report['rounds']} rounds")
    for alg in ALGORITHMS.values():
        rows = report.get(alg)
        if not rows:
            continue
        spread = rows[0]["spread"]
        print(f"{alg}: {rows[0]['keys']} keys per path (baseline key times: +-{spread:.1%})")
        for r in rows:
            target = f"   (target >= {r['target']}x)" if r.get("target") else ""
            cpu = (f"  cpu {r['cpu']:6.2f} s ({r['cpu_ratio']:4.2f}x)"
                   if r.get("cpu_ratio") else "")
            print(f"  {r['path']:<42} {r['rate']:8.2f} keys/s  {r['seconds']:7.2f} s  "
                  f"ratio {r['ratio']:5.2f}x{cpu}{target}")


def main() -> int:
    if sys.argv[1:] == ["--baseline-child"]:
        return baseline_child()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rsa", type=int, default=60, help="RSA-2048 keys per path")
    parser.add_argument("--ec", type=int, default=240, help="ECDSA P-256 keys per path")
    parser.add_argument("--rounds", type=int, default=3, help="turns the paths take")
    parser.add_argument("--local", action="store_true",
                        help="keyrite through Pkcs11Signer in this process, not over SSH")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--dir", type=Path, help="where the tokens go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="keyrite-bench-") as d:
        report = run(args, Path(d))
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        show(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
