"""The strict loader: TOML text in, a frozen `Script` out, or every problem at once.

The whole script is checked before anything runs, the way boulder's ceremony tool refuses its
config before the HSM is opened: an unknown key, a wrong type or a step that names an undeclared
drive is found at the desk, not at step 87 with the officers in the room. Reading goes in three
passes that each keep going after a problem: tables and types (`tables`, `schema`), declarations
(`declared`), steps against each other and the declarations (`steps`); the model is built only
when all three found nothing.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import tomllib
from pathlib import Path

from ceremony.script.declared import Declared
from ceremony.script.errors import ScriptError, ScriptErrors
from ceremony.script.formats import check_value
from ceremony.script.locate import KeyPath, Locator, render_keypath
from ceremony.script.model import (
    Bag,
    Ceremony,
    Drive,
    KeySpec,
    Material,
    Password,
    Policy,
    Quorum,
    Role,
    Script,
    Section,
    Signer,
    Step,
)
from ceremony.script.schema import DOCUMENT, OBSERVATION_FORMATS, step_parameters
from ceremony.script.steps import StepChecker
from ceremony.script.tables import Row, read_table

#: The seed ceremony shipped inside the package: `keyrite script check` and `rehearse` default.
BUNDLED_SCRIPT = "second-key-generation.toml"

_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at (?:line (?P<line>[0-9]+), column (?P<col>[0-9]+)|"
                            r"end of document)\)$", re.DOTALL)


def bundled_script_path() -> Path:
    """Where the bundled script is installed (it is a plain file in a regular install)."""
    return Path(str(importlib.resources.files("ceremony") / "scripts" / BUNDLED_SCRIPT))


def load_script(path: str | os.PathLike[str]) -> Script:
    """Read and check the script at `path`; raises ScriptErrors listing every problem."""
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ScriptErrors([ScriptError(name, None, "", f"cannot read: {e.strerror or e}")]) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ScriptErrors([ScriptError(name, line, "", f"not UTF-8: byte "
                                        f"0x{data[e.start]:02x} cannot be decoded")]) from e
    return _load(text, name, hashlib.sha256(data).hexdigest())


def load_script_text(text: str, path: str = "<memory>") -> Script:
    """Check a script given as text; `path` only names it in errors and in `Script.path`."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _load(text, path, digest)


def _load(text: str, name: str, digest: str) -> Script:
    """Parse and check; TOML nested deeper than Python's recursion allows (tomllib is recursive,
    and so are the checks) is an error like any other, never a RecursionError."""
    try:
        return _parse_and_check(text, name, digest)
    except RecursionError:
        raise ScriptErrors([ScriptError(name, None, "", "TOML nested too deeply (arrays or "
                                        "inline tables inside each other hundreds of levels "
                                        "deep): not a ceremony script")]) from None


def _parse_and_check(text: str, name: str, digest: str) -> Script:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScriptErrors([_syntax_error(e, text, name)]) from None
    locator = Locator(text)
    errors: list[ScriptError] = []

    def report(at: KeyPath, message: str) -> None:
        errors.append(ScriptError(name, locator.line(at), render_keypath(at), message))

    doc = read_table(DOCUMENT, raw, (), report)
    declared = Declared(doc, report, locator.line)
    declared.check()
    StepChecker(declared).check()
    if errors:
        raise ScriptErrors(errors)
    return _build(doc, digest, name)


def _syntax_error(e: tomllib.TOMLDecodeError, text: str, name: str) -> ScriptError:
    m = _TOML_POSITION.match(str(e))
    if not m:
        return ScriptError(name, 1, "", f"TOML syntax: {e}")
    if m["line"] is None:  # at end of document
        return ScriptError(name, text.count("\n") + 1, "", f"TOML syntax: {m['msg']}")
    return ScriptError(name, int(m["line"]), "", f"TOML syntax: {m['msg']}", int(m["col"]))


def _build(doc: Row, digest: str, name: str) -> Script:
    """The model from rows that all read and cross-checked without a problem."""
    v = doc.values
    signers = tuple(Signer(**r.values) for r in v["signers"])
    separation = v["separation"]
    return Script(
        ceremony=Ceremony(**v["ceremony"].values),
        roles={n: Role(name=n, **r.values) for n, r in v["roles"].items()},
        may_combine=frozenset(
            frozenset(pair) for pair in (separation.get("may_combine") if separation else ())
        ),
        materials=tuple(Material(**r.values) for r in v["materials"]),
        signers=signers,
        drives={r.get("label"): Drive(**r.values) for r in v["drives"]},
        bags={r.get("label"): Bag(**r.values) for r in v["bags"]},
        passwords={r.get("name"): Password(**r.values) for r in v["passwords"]},
        policies={
            r.get("name"): Policy(r.get("name"), tuple(KeySpec(**k.values) for k in r.get("keys")))
            for r in v["policies"]
        },
        quorums={r.get("id"): Quorum(**r.values) for r in v["quorums"]},
        sections=tuple(
            Section(
                title=s.get("title"),
                estimated=s.get("estimated"),
                note=s.get("note"),
                steps=tuple(_step(r, s.get("title"), signers) for r in s.get("steps")),
            )
            for s in v["sections"]
        ),
        sha256=digest,
        path=name,
    )


def _step(row: Row, section: str, signers: tuple[Signer, ...]) -> Step:
    values = dict(row.values)
    action, observe = values["action"], values.get("observe")
    required, optional = step_parameters(action, observe)
    if "signer" in required + optional and values["signer"] is None:
        values["signer"] = signers[0].name  # the checks made sure there is exactly one
    if values["value"] is not None:
        values["value"] = check_value(OBSERVATION_FORMATS[observe], values["value"])
    return Step(section=section, **values)
