"""The rehearsal's HSM: a fresh SoftHSM2 token (or a private opencryptoki one, `token_module`)
and key-state source holding what a previous ceremony left behind, so every figure the seed
ceremony reads (140 keys, 115 after the purge, 200 after generating for P14M) comes out of the
real rules and a real token.

The fixture takes the same `PolicyKeys` list the script gives the signer, so the keys it seeds and
the keys the ceremony then plans agree by construction; the figures it returns are computed with
the planning module's own count, and tests check them against the seed's numbers.

Seeding RSA keys is the slow part (~0.4 s each here), so the keys are split over several worker
processes on the one token (signer_shim.pkcs11.pool, as Pkcs11Signer does with `workers`): SoftHSM2
allows that (file locks), and it is what the second core is for. python-pkcs11 itself is never
used from two threads of one process. While the processes write, none reads (SoftHSM's view of
another process's concurrent writes is unreliable); the keys are listed and checked afterwards
from a fresh process.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ceremony.durations import MONTH, YEAR, parse_duration
from signer_shim.config import SignerConfig
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import PolicyKeys, Progress, SignerError
from signer_shim.keystate import KeyRecord, KeyState, save_keystate
from signer_shim.pkcs11 import pool
from signer_shim.pkcs11.inventory import contents_from_objects, key_problems, wrap_judged
from signer_shim.pkcs11.softhsm import SoftHSMToken, create_token
from signer_shim.pkcs11.workerclient import WorkerClient
from signer_shim.planning import keys_needed, new_locator
from staging import okc

#: the PKCS#11 implementations a rehearsal's token can be made on (`keyrite rehearse
#: --token-module`): SoftHSM2, or opencryptoki's software token in a private pkcsslotd
TOKEN_MODULES = ("softhsm2", "opencryptoki")

#: The seed ceremony's one policy: KSK RSA/2048 for a year, ZSK RSA/2048 for three months.
DEFAULT_POLICIES = (
    PolicyKeys(policy="default", role="KSK", algorithm="RSA/2048", lifetime_seconds=YEAR),
    PolicyKeys(policy="default", role="ZSK", algorithm="RSA/2048", lifetime_seconds=3 * MONTH),
)
IN_USE_STATES = ("active", "publish", "ready", "retire")


@dataclass(frozen=True)
class Shape:
    """What a previous ceremony left, per policy: zones, and keys per role by kind."""

    zones: int
    dead: Mapping[str, int]
    unused: Mapping[str, int]
    in_use: Mapping[str, int]


SHAPES: Mapping[str, Shape] = {
    # the seed: 13 zones, 140 keys, 25 dead, 6 unused (1 KSK, 5 ZSK), 109 in zones
    "seed": Shape(zones=13, dead={"KSK": 5, "ZSK": 20}, unused={"KSK": 1, "ZSK": 5},
                  in_use={"KSK": 26, "ZSK": 83}),
    # fast tests: 1 zone, 6 keys (2 dead, 1 unused ZSK, 3 in use) -> 4 -> +6 -> 10
    "small": Shape(zones=1, dead={"KSK": 1, "ZSK": 1}, unused={"ZSK": 1},
                   in_use={"KSK": 1, "ZSK": 2}),
}
# rehearsals staged before the seed's shape had its name recorded it as "default"
SHAPES = {**SHAPES, "default": SHAPES["seed"]}


@dataclass(frozen=True)
class Figures:
    """What the ceremony should see on this token."""

    keys: int  # listed before the purge (seed: 140)
    dead: int  # deleted by the purge (25)
    after_purge: int  # (115)
    duration: str  # the generation window the figures assume (P14M)
    to_generate: int  # (85)
    after_generate: int  # (200)


@dataclass(frozen=True)
class RehearsalToken:
    token: SoftHSMToken | okc.OkcToken  # its files, label and PINs (PINs not in repr); an
    # OkcToken's pkcsslotd is stopped again once seeded (staging.okc.running restarts it)
    config: SignerConfig  # ready for Pkcs11Signer(config)
    config_path: Path  # the same, as TOML
    figures: Figures
    zones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # policy -> zones


def seed_records(policies: Sequence[PolicyKeys], shape: Shape) -> tuple[dict[str, tuple[str, ...]],
                                                                         list[KeyRecord]]:
    """The zones and key records a previous ceremony left (pure apart from random locators)."""
    names = sorted({p.policy for p in policies})
    zones = {
        p: tuple(f"zone{i:02d}.example" if len(names) == 1 else f"zone{i:02d}.{p}.example"
                 for i in range(1, shape.zones + 1))
        for p in names
    }
    records = []
    for pk in policies:
        z = zones[pk.policy]

        def rec(state: str, zone: str | None, pk: PolicyKeys = pk) -> KeyRecord:
            return KeyRecord(locator=new_locator(), policy=pk.policy, role=pk.role,
                             algorithm=pk.algorithm, state=state, zone=zone)

        records += [rec("dead", z[i % len(z)] if z else None)
                    for i in range(shape.dead.get(pk.role, 0))]
        records += [rec("generate", None) for _ in range(shape.unused.get(pk.role, 0))]
        records += [rec(IN_USE_STATES[(i // len(z)) % len(IN_USE_STATES)], z[i % len(z)])
                    for i in range(shape.in_use.get(pk.role, 0) if z else 0)]
    return zones, records


def expected_figures(policies: Sequence[PolicyKeys], shape: Shape, records: Sequence[KeyRecord],
                     duration: str) -> Figures:
    seconds = parse_duration(duration).seconds
    dead = sum(1 for r in records if r.state == "dead")
    generate = sum(
        keys_needed(seconds, pk.lifetime_seconds, shape.zones,
                    sum(1 for r in records if r.unused and (r.policy, r.role, r.algorithm)
                        == (pk.policy, pk.role, pk.algorithm)))
        for pk in policies
    )
    n = len(records)
    return Figures(n, dead, n - dead, duration, generate, n - dead + generate)


def seed_rehearsal_token(
    workdir: Path,
    policies: Sequence[PolicyKeys] = DEFAULT_POLICIES,
    *,
    shape: str | Shape = "seed",
    duration: str = "P14M",
    name: str = "signer",
    role: str = "standby",
    label: str = "rehearsal",
    processes: int = 2,
    progress: Progress | None = None,
    token_module: str = "softhsm2",
    backup_method: str = "tokendir",
) -> RehearsalToken:
    """Make `workdir/hsm` (token), `workdir/state` (key state, host key) and `workdir/signer.toml`.

    `workdir/hsm` must not exist yet. Progress is reported as ("seeded 37 of 140 keys").
    `token_module` "opencryptoki" makes the token in a private pkcsslotd (staging.okc), seeded
    through the same worker and key-state path with one process (concurrent writers are
    untested there), and leaves it stopped; signer.toml then names the profile and launcher.
    `backup_method` "wrap" (SoftHSM2 only) seeds keys a trusted KEK can wrap and gives the
    config the token's SO PIN, which the KEK's import needs.
    """
    if backup_method == "wrap" and token_module != "softhsm2":
        raise ValueError("wrap backups are rehearsed on SoftHSM2 only")
    if token_module not in TOKEN_MODULES:
        raise ValueError(f"unknown token module {token_module!r}")
    workdir = Path(workdir).absolute()
    s = SHAPES[shape] if isinstance(shape, str) else shape
    zones, records = seed_records(policies, s)
    figures = expected_figures(policies, s, records, duration)

    state_dir = workdir / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    host_key = ensure_host_key(state_dir / "ssh_host_ed25519_key")
    if token_module == "opencryptoki":
        pins = [f"{secrets.randbelow(10**8):08d}" for _ in range(2)]  # 4 to 8 characters here
        token: SoftHSMToken | okc.OkcToken = okc.start(workdir / "hsm", label, *pins)
        try:
            config = SignerConfig(
                name=name, role=role, module=token.module,
                softhsm2_conf=workdir / "hsm" / "unused-softhsm2.conf",  # required, not read
                token_label=label, user_pin=token.user_pin, state_dir=state_dir,
                host_key_path=host_key, profile=okc.PROFILE, launcher=token.launcher)
            _generate_parallel(config, records, 1, progress)
        finally:
            okc.stop(token)
    else:
        token = create_token(workdir / "hsm", label)
        config = SignerConfig(
            name=name, role=role, module=token.module, softhsm2_conf=token.softhsm2_conf,
            token_label=label, user_pin=token.user_pin, state_dir=state_dir,
            host_key_path=host_key,
            workers=max(1, processes),  # the ceremony's generate uses the cores the seeding did
            **({"backup_method": "wrap", "so_pin": token.so_pin}
               if backup_method == "wrap" else {}),
        )
        _generate_parallel(config, records, max(1, processes), progress)
    save_keystate(config.keystate_path, KeyState(zones, {r.locator: r for r in records}))
    config_path = config.save(workdir / "signer.toml")
    return RehearsalToken(token, config, config_path, figures, zones)


def _generate_parallel(config: SignerConfig, records: Sequence[KeyRecord], processes: int,
                       progress: Progress | None) -> None:
    """Generate the records' keys over `processes` workers (signer_shim.pkcs11.pool) and check the
    token then holds exactly these keys."""
    total = len(records)

    def spawn() -> WorkerClient:
        client = WorkerClient(config.module, config.softhsm2_conf, config.token_label,
                              config.user_pin, launcher=config.launcher)
        if config.backup_method == "wrap":  # as the signer's own workers make them
            client.call("key_template", {"method": "wrap"})
        return client

    def relay(n: int, _total: int) -> None:
        if progress is not None:
            progress(n, total, f"seeded {n} of {total} keys")

    keys = [{"locator": r.locator, "algorithm": r.algorithm} for r in records]
    pool.generate(spawn, keys, processes, relay)
    # Checked from a fresh process once both writers are gone: while two processes write to
    # one token, each one's view of the other's objects is unreliable in SoftHSM (stale lists,
    # invalid handles); a fresh process reads the directory as it is.
    checker = WorkerClient(config.module, config.softhsm2_conf, config.token_label,
                           config.user_pin, launcher=config.launcher)
    try:
        listed = contents_from_objects(config.token_label, checker.call("list_objects"))
        audit = checker.call("audit")
        if config.backup_method == "wrap":  # extractable, but only wrapped by the trusted KEK
            audit = wrap_judged(audit, checker.call("wrappable", {}))
    finally:
        checker.close()
    expected = {r.locator for r in records}
    if listed.locators != expected or listed.halves:
        raise SignerError(f"seeding left {len(listed.locators)} keys and {len(listed.halves)} "
                          f"half pairs, expected {total} keys")
    for r in records:
        wrong = key_problems(audit[r.locator], r.locator, r.algorithm)
        if wrong:
            raise SignerError(f"seeded key {r.locator} is not as asked: {', '.join(wrong)}")
