"""What a signer can do of a ceremony script, judged at the desk from its config alone.

`keyrite script check SCRIPT --signer signer.toml` asks this before the day: nothing here
touches a token or starts a daemon. It refuses only contradictions a config settles: a KEK for a
signer that does not back up by wrapping, a password-protected restore on one that does, keys a
token profile has no mechanism for, a backup a token cannot make, a KEK on OpenDNSSEC (its keys
are never extractable). What only the token can say (its mechanism list, whether it holds a KEK
already) is still checked when the signer plans.
"""

from __future__ import annotations

from pathlib import Path

from ceremony.script.model import Script, Step
from signer_shim.algorithms import algorithm
from signer_shim.config import SignerConfig
from signer_shim.opendnssec.ods_config import OdsConfig
from signer_shim.pkcs11.profiles import PROFILES, TOKENDIR, TokenProfile

#: attributes a wrap backup needs the token to take (the KEK is CKA_TRUSTED; the keys only
#: leave wrapped by a trusted key)
WRAP_ATTRIBUTES = frozenset({"TRUSTED", "WRAP_WITH_TRUSTED"})


def profile_of(config: SignerConfig) -> TokenProfile | None:
    """The configured profile, else the one whose usual module path the config names; None when
    only the token can tell (its identity is read when the shim starts)."""
    if config.profile:
        return PROFILES.get(config.profile)
    return next((p for p in PROFILES.values() if Path(config.module) == p.module), None)


def problems(script: Script, config: SignerConfig | OdsConfig) -> list[str]:
    """Each way `script` cannot run on this signer, as `step N (action): why`."""
    out: list[str] = []
    for step in script.steps:
        why = _ods(step) if isinstance(config, OdsConfig) else _pkcs11(script, step, config)
        if why:
            out.append(f"step {step.n} ({step.action}): {why}")
    return out


def summary(config: SignerConfig | OdsConfig) -> str:
    """What the judgement rested on, for the summary line."""
    if isinstance(config, OdsConfig):
        return "opendnssec (token-directory backups with the KASP database)"
    profile = profile_of(config)
    token = profile.name if profile else "profile told by the token (not checked here)"
    return f"pkcs11, {token}, backup method {config.backup_method}"


def _ods(step: Step) -> str | None:
    if step.action == "hsm.kek" or step.shares:
        return ("OpenDNSSEC makes its keys never extractable, so they cannot be wrapped: its "
                "backups are token-directory copies opened by a password")
    return None


def _pkcs11(script: Script, step: Step, config: SignerConfig) -> str | None:
    wrap = config.backup_method == "wrap"
    profile = profile_of(config)
    backs_up = step.action in ("hsm.backup", "hsm.restore", "hsm.kek") or step.drill
    if step.action == "hsm.kek" and not wrap:
        return ("this signer backs up by copying its token directory ([backup] method = "
                f"{config.backup_method!r}); a KEK is for method \"wrap\"")
    if step.shares and not wrap:
        return ("KEK shares open a wrap backup; this signer's backups are opened by a password "
                "([backup] method is not \"wrap\")")
    if wrap and step.action == "hsm.restore" and step.password:
        return ("this signer backs up by wrapping: its backups are opened by the KSOs' KEK "
                "shares (`shares = ROLE`), not a password")
    if wrap and step.drill and not step.shares:
        return ("this signer backs up by wrapping: the restore drill needs the KSOs' KEK shares "
                "(`shares = ROLE` beside `drill = true`), not a password")
    if profile is None:
        return None
    if step.action == "hsm.generate":
        names = step.policies or tuple(script.policies)
        kinds = sorted({k.algorithm for n in names for k in script.policies[n].keys
                        if _kind(k.algorithm) not in profile.keygen})
        if kinds:
            return f"the {profile.description} cannot generate {', '.join(kinds)} keys " \
                   f"(profile {profile.name!r})"
    if backs_up and wrap and WRAP_ATTRIBUTES & profile.rejected_attributes:
        return (f"the {profile.description} cannot wrap: it rejects "
                f"{', '.join('CKA_' + a for a in sorted(WRAP_ATTRIBUTES))} "
                f"(profile {profile.name!r})")
    if backs_up and not wrap and TOKENDIR not in profile.backup_methods:
        return f"the {profile.description} {profile.no_backup_reason} (profile {profile.name!r})"
    return None


def _kind(name: str) -> str | None:
    try:
        return algorithm(name).kind
    except ValueError:
        return None
