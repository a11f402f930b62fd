"""The rehearsal's closing summary, from the machine's state: what happened, in figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ceremony.digests import from_colon_hex
from ceremony.machine import Machine


def _results(m: Machine, action: str) -> list[tuple[int, dict[str, Any]]]:
    return m.results_of(action)


def build(m: Machine, *, status: str, journal: Path, checkpoint: str | None, checkpoint_key: str,
          drives_root: Path, token: dict[str, str]) -> dict[str, Any]:
    purge = _results(m, "hsm.purge")
    gen = _results(m, "hsm.generate")
    backup = _results(m, "hsm.backup")
    keys = {
        "initial": purge[0][1].get("before") if purge else None,
        "after_purge": purge[-1][1].get("after") if purge else None,
        "after_generate": gen[-1][1].get("after") if gen else None,
        "purged": len(purge[-1][1].get("deleted", [])) if purge else None,
        "generated": len(gen[-1][1].get("generated", [])) if gen else None,
    }
    drives = []
    for label in m.script.drives:
        serial = next((r.get("serial") for n, r in _results(m, "drive.insert")
                       if m.script.step(n).drive == label), None)
        checks = [r.get("ok") for n, r in _results(m, "drive.verify")
                  if m.script.step(n).drive == label]
        copies = [r.get("verified") for n, r in _results(m, "drive.copy")
                  if m.script.step(n).drive == label]
        verified = bool(checks or copies) and all(checks) and all(copies)
        drives.append({"label": label, "serial": serial, "verified": verified,
                       "path": str(drives_root / label / "files")})
    out: dict[str, Any] = {
        "status": status,
        "ceremony": m.script.ceremony.id,
        "steps_completed": len(m.completed),
        "steps_total": len(m.steps),
        "journal": str(journal),
        "checkpoint": checkpoint,
        "checkpoint_key": checkpoint_key,
        "keys": keys,
        "backup_sha256": from_colon_hex(backup[-1][1]["sha256"]) if backup else None,
        "backup_file": backup[-1][1].get("file") if backup else None,
        "drives": drives,
        "custody": m.custody,
        "bags": {bag: c.get("serial") for bag, c in m.custody.items()},
        "restore_drill": next((r["drill"] for n, r in _results(m, "drive.verify")
                               if "drill" in r), None),
        "token": token,
    }
    if m.exception:
        out["exception"] = m.exception
    return out


def render_text(s: dict[str, Any]) -> str:
    k = s["keys"]
    lines = [f"ceremony {s['ceremony']}: {s['status']}, "
             f"{s['steps_completed']} of {s['steps_total']} steps"]
    if k["initial"] is not None or k["after_generate"] is not None:  # a ceremony that changes
        lines.append(f"keys: {k['initial']} found, {k['after_purge']} after the purge, "
                     f"{k['after_generate']} after generating")
    if s.get("backup_file"):  # one that writes a backup (an audit or a restore writes none)
        lines.append(f"backup: {s['backup_file']} sha256 {s['backup_sha256']}")
    lines += [f"drive {d['label']:<12} serial {d['serial']}  "
              f"{'verified' if d['verified'] else 'NOT verified'}  {d['path']}"
              for d in s["drives"]]
    lines += [f"bag {b:<12} serial {c['serial']} held by {c['custodian']}"
              + (f" (from {c['from']} at step {c['step']})" if c.get("from") else "")
              + f": {', '.join(c['contents'])}" for b, c in s["custody"].items()]
    d = s.get("restore_drill")
    if d:
        lines.append(f"restore drill: {d['restored']} of {d['live']} keys restored into a "
                     f"scratch token, {'the same as the HSM' if d['match'] else 'DIFFERENT'}")
    lines.append(f"journal: {s['journal']}  (check it: keyrite verify {s['journal']})")
    lines.append(f"checkpoint key: {s['checkpoint_key']}")
    if s.get("report"):
        lines.append(f"report: {s['report']}  (for the auditor, to print)")
        lines.append(f"transcript: {s['transcript']}  and  {s['transcript_pdf']}")
    if s.get("cosigners"):
        lines.append(f"final checkpoint cosigned by: {', '.join(s['cosigners'])}")
    if s.get("exception"):
        lines.append(f"stopped at step {s['exception']['step']}: {s['exception']['reason']}")
    t = s["token"]
    lines.append(f"token: SOFTHSM2_CONF={t['softhsm2_conf']} label {t['label']} "
                 f"user PIN {t['user_pin']}")
    return "\n".join(lines)
