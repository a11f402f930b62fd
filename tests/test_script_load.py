"""The loader on good scripts (every model value), on files, and on the bundled seed ceremony."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ceremony.durations import parse_duration
from ceremony.script import (
    Bag,
    Ceremony,
    Drive,
    KeySpec,
    Material,
    Quorum,
    Role,
    ScriptErrors,
    Signer,
    Step,
    bundled_script_path,
    load_script,
    load_script_text,
)
from keyrite.exits import BadInput
from tests.test_script_samples import BASE, FILE, change, errors_of, line_of, load

DOC = Path(__file__).resolve().parent.parent / "docs" / "script-format.md"


def test_minimal_script_model() -> None:
    s = load(BASE)
    assert s.ceremony == Ceremony(
        id="mini", title="Mini Ceremony", version="3", administrator="KGA", continues=None,
        previous=("key_count", "livecd_sha256"), estimated=None,
    )
    assert s.roles == {
        "KGA": Role("KGA", "Key Generation Administrator", "facilitates", 1, 1, True, False),
        "SA": Role("SA", "System Administrator", "operates", 1, 1, True, False),
        "KSO": Role("KSO", "Keystore Security Officer", "approves", 2, 2, True, False),
        "WI": Role("WI", "Witness", "observes", 0, 3, False, True),
    }
    assert s.may_combine == frozenset({frozenset({"KGA", "KSO"})})
    assert s.materials == (Material("Laptop", 1),)
    assert s.signers == (
        Signer("standby", "standby", "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"),
    )
    # the declared serial is kept in its normal form, as observed serials will be compared
    assert s.drives == {"log": Drive("log", "Key Gen Log", "0019E000FAA9"),
                        "spare": Drive("spare", "Spare", None)}
    assert s.bags == {"bag1": Bag("bag1", "Master Copy")}
    assert list(s.policies) == ["default"]
    assert s.policies["default"].keys == (KeySpec("KSK", "RSA/2048", parse_duration("P1Y")),)
    assert s.quorums == {"gen": Quorum("gen", "KSO", 2, 6, parse_duration("PT5M"))}
    assert [(x.title, x.estimated.text, x.note, len(x.steps)) for x in s.sections] == [
        ("Start", "PT10M", None, 4), ("Keys", "PT20M", "Fourteen months.", 4),
    ]
    assert [step.n for step in s.steps] == list(range(1, 9))
    assert s.step(4) == Step(
        n=4, actor="KGA", text="Check the log drive's serial.", action="verify", section="Start",
        observe="drive.serial", drive="log", expect="drive.log.serial",
    )
    # the only signer is filled in; a single quorum id becomes a tuple; defaults are empty
    assert s.step(6) == Step(
        n=6, actor="SA", text="Generate keys.", action="hsm.generate", section="Keys",
        quorum=("gen",), duration=parse_duration("P14M"), signer="standby",
    )
    assert s.step(5).quorum == ("gen",) and s.step(5).count == 2 and s.step(5).signer is None
    assert s.step(7) == Step(
        n=7, actor="KSO", text="Accept the sealed bag.", action="seal", section="Keys",
        bag="bag1", serial=2, contents=("drive:log",),
    )
    assert s.step(2).format == "bag-serial" and s.step(2).bag == "bag1"
    assert s.sha256 == hashlib.sha256(BASE.encode()).hexdigest()
    assert s.path == FILE


def test_verify_value_is_stored_normalised() -> None:
    text = change('expect = "drive.log.serial"', 'value = "0019 e000-faa9"')
    assert load(text).step(4).value == "0019E000FAA9"


def test_md5_host_key_normalised_as_the_signer_reports_it() -> None:
    text = change('"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"',
                  '"ED:73:EE:03:6C:4C:C0:26:3A:E8:F4:CC:60:26:A1:81"')
    assert load(text).signers[0].host_key == "MD5:ed:73:ee:03:6c:4c:c0:26:3a:e8:f4:cc:60:26:a1:81"


def test_named_signer_is_kept() -> None:
    text = change('duration = "P14M"', 'duration = "P14M"\nsigner = "standby"')
    assert load(text).step(6).signer == "standby"


def test_load_script_reads_file_and_hashes_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    data = BASE.replace("\n", "\r\n").encode()  # CRLF: the hash is of the bytes, not the text
    path.write_bytes(data)
    s = load_script(path)
    assert s.sha256 == hashlib.sha256(data).hexdigest()
    assert s.path == str(path)
    assert len(s.steps) == 8


def test_errors_are_all_reported_in_line_order() -> None:
    text = change("n = 7", "n = true", change('version = "3"', "version = 3"))
    e = pytest.raises(ScriptErrors, load, text).value
    assert isinstance(e, BadInput)
    assert [x.line for x in e.errors] == [line_of(text, "version"), line_of(text, "n = true")]
    assert str(e).splitlines() == [
        f"{FILE}:{line_of(text, 'version')}: ceremony.version: expected a string, got an "
        "integer (3)",
        f"{FILE}:{line_of(text, 'n = true')}: sections[1].steps[2].n: expected an integer, got a "
        "boolean (true)",
    ]


def test_toml_syntax_error_has_tomllib_line_and_column() -> None:
    text = change("n = 3", "n = = 3")
    (e,) = errors_of(text)
    assert (e.path, e.line, e.column, e.keypath) == (FILE, line_of(text, "n = = 3"), 5, "")
    assert str(e) == f"{FILE}:{e.line}:5: TOML syntax: Invalid value"


def test_toml_syntax_error_at_end_of_document() -> None:
    (e,) = errors_of('[ceremony]\nid = "x')
    assert (e.line, e.column) == (2, None)
    assert e.message.startswith("TOML syntax: ")


def test_duplicate_toml_key_is_a_syntax_error() -> None:
    text = change('title = "Mini Ceremony"', 'title = "Mini Ceremony"\ntitle = "Again"')
    (e,) = errors_of(text)
    assert e.line == line_of(text, 'title = "Again"') and e.message.startswith("TOML syntax")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    e = pytest.raises(ScriptErrors, load_script, path).value
    assert str(e) == f"{path}: cannot read: No such file or directory"


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.replace("Mini Ceremony", "Mini C\xe9r\xe9monie").encode("latin-1"))
    (e,) = pytest.raises(ScriptErrors, load_script, path).value.errors
    assert e.line == line_of(BASE, "Mini Ceremony")
    assert e.message == "not UTF-8: byte 0xe9 cannot be decoded"


def test_empty_text() -> None:
    assert {(e.line, e.keypath) for e in errors_of("")} == {
        (1, "ceremony"), (1, "roles"), (1, "sections")}


def test_scripterrors_needs_an_error() -> None:
    with pytest.raises(ValueError):
        ScriptErrors([])


def _doc_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    tail = text[text.index("## Complete example"):]
    m = re.search(r"```toml\n(.*?)```", tail, re.DOTALL)
    assert m, "docs/script-format.md has no example"
    return m.group(1)


def test_docs_example_and_the_bundled_ceremonies_use_every_action() -> None:
    from ceremony.script import ACTIONS

    s = load_script_text(_doc_example(), "example.toml")
    bundled = [load_script(p) for p in sorted(bundled_script_path().parent.glob("*.toml"))]
    assert len(bundled) == 3
    # the KEK's two actions are in the wrap rehearsal's script
    wrap = load_script(DOC.parent.parent / "tests" / "scripts" / "keygen-wrap.toml")
    used = {step.action for script in (s, *bundled, wrap) for step in script.steps}
    assert used == set(ACTIONS)
    assert set(ACTIONS) - {step.action for step in s.steps} == {"unseal", "hsm.restore",
                                                                  "hsm.kek", "kek.share"}
    assert s.step(11).policies == ("default",)
    assert s.step(14).equals == 13
    assert s.step(21).contents == ("drive:master-copy", "password:device-backup")


def test_bundled_script_loads_with_every_seed_step() -> None:
    s = load_script(bundled_script_path())
    assert [step.n for step in s.steps] == list(range(1, 133))
    assert s.ceremony.id == "second-key-generation" and s.ceremony.version == "74"
    assert len(s.roles) == 6
    assert s.sha256 == hashlib.sha256(bundled_script_path().read_bytes()).hexdigest()
