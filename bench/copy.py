"""Copy-and-verify throughput of `BlockDrive` against `cp` + `sync` + `sha256sum -c`.

Both paths write the same files to the same ext4 filesystem on the same loop device, in the
same run, alternating round by round, and both read back from the device, not the page cache:
the `cp` path unmounts and mounts the filesystem before `sha256sum -c` (the equivalent of the
remount `BlockDrive.verify` does). Between rounds the files are deleted and the drive synced
(not timed). Target: BlockDrive at >= 0.9x the shell path's throughput.

Prints numbers, asserts nothing. Needs root (loop devices, mount). Usage:
  python bench/copy.py [--dir DIR] [--mib N] [--rounds R]
DIR holds the image (by default a fresh temporary directory; on tmpfs the "device" is RAM, so
the comparison is of the software, not of flash).
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
# (the imports below wait for the path)
# Run as `python bench/copy.py`, sys.path[0] is bench/, where this file would shadow the stdlib
# `copy` for every module imported after it: the repository root goes there instead, before
# anything else is imported (the other benches do the same).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import hashlib
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from coordinator.usb.blockfs import BlockDrive

MiB = 1 << 20


def run(*cmd: str) -> str:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}")
    return p.stdout


def make_sources(src: Path, mib: int) -> tuple[list[Path], dict[str, str]]:
    """A big 'backup', a small one, and a .sha256sum listing both (as a backup drive holds)."""
    src.mkdir()
    files, digests = [], {}
    for name, size in (("token-backup.tar", mib * MiB), ("journal.jsonl", MiB + 12345)):
        p = src / name
        with open(p, "wb") as f:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
        files.append(p)
        digests[name] = hashlib.sha256(p.read_bytes()).hexdigest()
    sums = src / "backup.sha256sum"
    sums.write_text("".join(f"{d}  {n}\n" for n, d in digests.items()))
    files.append(sums)
    digests[sums.name] = hashlib.sha256(sums.read_bytes()).hexdigest()
    return files, digests


def clear(mnt: Path) -> None:
    for p in mnt.iterdir():
        if p.is_file():
            p.unlink()
    os.sync()


def via_blockdrive(
    dev: str, root: Path, files: list[Path], digests: dict[str, str]
) -> tuple[float, float]:
    """(seconds for the whole copy+verify, seconds for the copy alone)."""
    d = BlockDrive(dev, root, "BENCH")
    d.mount()
    clear(d.mountpoint)
    t = time.perf_counter()
    d.copy([(p.name, p) for p in files])
    copied = time.perf_counter() - t
    res = d.verify(digests)
    took = time.perf_counter() - t
    if not res["ok"]:
        raise SystemExit(f"BlockDrive verify failed: {res['detail']}")
    clear(d.mountpoint)
    d.unmount()
    return took, copied


def via_shell(dev: str, mnt: Path, files: list[Path]) -> tuple[float, float]:
    """(seconds for cp+sync+remount+sha256sum -c, seconds for cp+sync alone)."""
    mnt.mkdir(mode=0o700, exist_ok=True)
    run("mount", "-o", "nosuid,nodev,noexec", "-t", "ext4", dev, str(mnt))
    clear(mnt)
    t = time.perf_counter()
    run("cp", *[str(p) for p in files], str(mnt))
    run("sync")
    copied = time.perf_counter() - t
    run("umount", str(mnt))
    run("mount", "-o", "nosuid,nodev,noexec", "-t", "ext4", dev, str(mnt))
    subprocess.run(
        ["sha256sum", "--quiet", "-c", "backup.sha256sum"], cwd=mnt, check=True, timeout=300
    )
    took = time.perf_counter() - t
    clear(mnt)
    run("umount", str(mnt))
    return took, copied


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--mib", type=int, default=64, help="size of the big file (default 64)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyrite-bench-copy-", dir=a.dir) as tmp:
        work = Path(tmp)
        files, digests = make_sources(work / "src", a.mib)
        total = sum(p.stat().st_size for p in files)
        img = work / "drive.img"
        with open(img, "wb") as f:
            f.truncate(max(4 * total, 64 * MiB))
        run("mkfs.ext4", "-q", "-F", str(img))
        dev = run("losetup", "--find", "--show", str(img)).strip()
        ours, shell = [], []
        try:
            for r in range(a.rounds):
                pair = [
                    ("blockdrive", ours, lambda: via_blockdrive(dev, work / "mnt", files, digests)),
                    ("cp+sync+sha256sum", shell, lambda: via_shell(dev, work / "shmnt", files)),
                ]
                if r % 2:
                    pair.reverse()
                for label, into, fn in pair:
                    into.append(fn())
                    whole, copied = into[-1]
                    print(
                        f"round {r + 1} {label:18s} {whole:.3f} s {total / MiB / whole:7.1f} "
                        f"MiB/s  (copy alone {copied:.3f} s, verify {whole - copied:.3f} s)",
                        flush=True,
                    )
        finally:
            for line in Path("/proc/self/mounts").read_text().splitlines():
                if line.split()[0] == dev:
                    subprocess.run(["umount", line.split()[1]], check=False)
            subprocess.run(["losetup", "-d", dev], check=False)
    mo, ms = (statistics.median(w for w, _ in x) for x in (ours, shell))
    co, cs = (statistics.median(c for _, c in x) for x in (ours, shell))
    print(
        f"\n{total / MiB:.1f} MiB per round ({len(files)} files), image on "
        f"{a.dir or tempfile.gettempdir()}, {a.rounds} rounds, medians:"
    )
    print(f"  BlockDrive copy+verify     {mo:.3f} s  {total / MiB / mo:7.1f} MiB/s")
    print(f"  cp+sync+remount+sha256sum  {ms:.3f} s  {total / MiB / ms:7.1f} MiB/s")
    print(f"  ratio (BlockDrive / shell throughput): {ms / mo:.2f}x  (target >= 0.9x)")
    print(
        f"  copy phase alone: BlockDrive.copy {co:.3f} s, cp+sync {cs:.3f} s, ratio {cs / co:.2f}x"
    )
    print(
        "  (the verify phase favours Python: hashlib uses OpenSSL's SHA-NI code, coreutils 9.1 "
        "sha256sum does not)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
