"""Signer benchmarks: key-generation throughput of keyrite against raw python-pkcs11.

For RSA-2048 and ECDSA P-256, in keys per second, each path on its own fresh SoftHSM2 token:

1. baseline: one process, one session, a bare loop of C_GenerateKeyPair making stored token
   keys with the worker's own attributes (signer_shim.worker.Worker._generate_one), timed
   around the loop only (no process start, no login);
2. keyrite, workers = 1: one planned generate operation executed through the shim over SSH on
   127.0.0.1 (signer_shim.standup, signer_shim.client.ShimClient), timed around `execute`:
   quorum check, journals, listings, per-key checks and the key-state update included;
3. keyrite, workers = 2: the same with the generate spread over two worker processes
   (signer_shim.pool), helper start-up included.

`--local` measures (2) and (3) through LocalSigner in this process instead of over SSH.
Ratios are against (1) measured in the same run; targets: >= 0.95x with one worker, >= 1.7x
for RSA with two (on two cores). RSA key times vary with the primes found, so a run of n keys
carries a spread of its own, printed as +-% (standard error of the baseline's mean key time).
Prints numbers, asserts nothing. Usage: python bench/shim.py [--rsa N] [--ec N] [--local]
[--json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from keyrite.approval import Approval, public_key_text, sign_approval  # noqa: E402
from keyrite.digests import operation_digest  # noqa: E402
from keyrite.durations import YEAR  # noqa: E402
from signer_shim.authority import Authority, Officer, Rule  # noqa: E402
from signer_shim.config import SignerConfig  # noqa: E402
from signer_shim.hostkey import ensure_host_key  # noqa: E402
from signer_shim.interface import PolicyKeys  # noqa: E402
from signer_shim.keystate import KeyState, save_keystate  # noqa: E402
from signer_shim.local import LocalSigner  # noqa: E402
from signer_shim.planning import new_locator  # noqa: E402
from signer_shim.softhsm import child_env, create_token  # noqa: E402

ALGORITHMS = {"rsa": "RSA/2048", "ec": "ECDSA/P-256"}
CEREMONY, SCRIPT_SHA256, STEP = "bench", "00" * 32, 33
ROOT = Path(__file__).resolve().parent.parent


def baseline_child() -> int:
    """In a child with SOFTHSM2_CONF set (SoftHSM reads it once per process): params as JSON on
    stdin (the PIN stays off the command line), the loop's times as JSON on stdout."""
    from signer_shim.worker import Worker

    p = json.load(sys.stdin)
    w = Worker(p["module"], p["label"])
    w.open(p["pin"])
    times = []
    for _ in range(p["n"]):
        loc = new_locator()
        t0 = time.perf_counter()
        w._generate_one(loc, p["algorithm"])
        times.append(time.perf_counter() - t0)
    json.dump({"times": times}, sys.stdout)
    return 0


def baseline(workdir: Path, alg: str, n: int) -> dict[str, Any]:
    token = create_token(workdir / "hsm", "bench")
    params = {"module": str(token.module), "label": token.label, "pin": token.user_pin,
              "algorithm": alg, "n": n}
    out = subprocess.run([sys.executable, __file__, "--baseline-child"], input=json.dumps(params),
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env=child_env(token.softhsm2_conf))
    times = json.loads(out.stdout)["times"]
    mean = statistics.fmean(times)
    spread = statistics.stdev(times) / mean / len(times) ** 0.5 if len(times) > 1 else 0.0
    return {"path": "baseline", "keys": n, "seconds": sum(times), "rate": n / sum(times),
            "spread": spread}


def signer_setup(workdir: Path, alg: str, n: int, workers: int) -> tuple[Path, PolicyKeys]:
    """A token, a key state with n zones and no keys, and the signer config: planning for
    P1Y with a one-year lifetime then asks for exactly n keys."""
    token = create_token(workdir / "hsm", "bench")
    state = workdir / "state"
    state.mkdir()
    config = SignerConfig(name="bench", role="standby", module=token.module,
                          softhsm2_conf=token.softhsm2_conf, token_label=token.label,
                          user_pin=token.user_pin, state_dir=state,
                          host_key_path=ensure_host_key(state / "ssh_host_ed25519_key"),
                          workers=workers)
    zones = tuple(f"zone{i:04d}.example" for i in range(n))
    save_keystate(config.keystate_path, KeyState({"bench": zones}, {}))
    pk = PolicyKeys(policy="bench", role="ZSK", algorithm=alg, lifetime_seconds=YEAR)
    return config.save(workdir / "signer.toml"), pk


def approvals(officer: Ed25519PrivateKey, op: dict[str, Any]) -> list[Approval]:
    return [sign_approval(officer, ceremony=CEREMONY, step=STEP, script_sha256=SCRIPT_SHA256,
                          operation=operation_digest(op), expires=int(time.time()) + 3600)]


def keyrite(workdir: Path, alg: str, n: int, workers: int, local: bool) -> dict[str, Any]:
    config_path, pk = signer_setup(workdir, alg, n, workers)
    officer = Ed25519PrivateKey.generate()
    with ExitStack() as stack:
        if local:
            signer: Any = stack.enter_context(LocalSigner(SignerConfig.load(config_path)))
        else:
            from signer_shim.client import ShimClient
            from signer_shim.standup import ShimProcess, write_shim_files

            key = public_key_text(officer.public_key())
            authority = Authority(CEREMONY, SCRIPT_SHA256, {key: Officer("Bench", "SA", key)},
                                  (Rule("generate", STEP, (("SA", 1),)),))
            files = write_shim_files(workdir / "shim", config_path, authority)
            shim = stack.enter_context(ShimProcess(files.config))
            signer = stack.enter_context(ShimClient("127.0.0.1", shim.port,
                                                    client_key=files.client_key,
                                                    host_key_pin=files.host_key_pin))
        op = signer.plan_generate([pk], "P1Y")
        count = sum(len(b["locators"]) for b in op["batches"])
        assert count == n, f"planned {count} keys, wanted {n}"
        t0 = time.perf_counter()
        result = signer.execute(op, approvals(officer, op))
        seconds = time.perf_counter() - t0
        assert result["added"] == n, result
    how = "in-process LocalSigner" if local else "shim over SSH"
    return {"path": f"keyrite workers={workers} ({how})", "keys": n, "seconds": seconds,
            "rate": n / seconds}


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"cores": os.cpu_count(), "via": "local" if args.local else "ssh"}
    for name, n in (("rsa", args.rsa), ("ec", args.ec)):
        if n <= 0:
            continue
        alg = ALGORITHMS[name]
        rows = []
        for workers in (0, 1, 2):  # 0: the baseline
            d = base / f"{name}-{workers}"
            d.mkdir()
            rows.append(keyrite(d, alg, n, workers, args.local) if workers
                        else baseline(d, alg, n))
        for r in rows:
            r["ratio"] = r["rate"] / rows[0]["rate"]
        rows[1]["target"], rows[2]["target"] = 0.95, 1.7 if name == "rsa" else None
        report[alg] = rows
    return report


def show(report: dict[str, Any]) -> None:
    via = "over SSH on 127.0.0.1" if report["via"] == "ssh" else "in-process"
    print(f"{report['cores']} cores; keyrite measured {via}")
    for alg in ALGORITHMS.values():
        rows = report.get(alg)
        if not rows:
            continue
        spread = rows[0]["spread"]
        print(f"{alg}: {rows[0]['keys']} keys per path (baseline key times: +-{spread:.1%})")
        for r in rows:
            target = f"   (target >= {r['target']}x)" if r.get("target") else ""
            print(f"  {r['path']:<42} {r['rate']:8.2f} keys/s  {r['seconds']:7.2f} s  "
                  f"ratio {r['ratio']:5.2f}x{target}")


def main() -> int:
    if sys.argv[1:] == ["--baseline-child"]:
        return baseline_child()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rsa", type=int, default=40, help="RSA-2048 keys per path")
    parser.add_argument("--ec", type=int, default=200, help="ECDSA P-256 keys per path")
    parser.add_argument("--local", action="store_true",
                        help="keyrite through LocalSigner in this process, not over SSH")
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
