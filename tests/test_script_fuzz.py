"""Random changes to valid scripts either load or raise ScriptErrors, never anything else.

Like h11's fuzzer: only the documented error type may escape the loader, and every error it
reports points at a real line of the file.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ceremony.script import ACTIONS, OBSERVATIONS, RECORD_FORMATS, ScriptErrors, load_script_text
from ceremony.script.locate import Locator
from tests.test_script_samples import BASE

DOC = Path(__file__).resolve().parent.parent / "docs" / "script-format.md"
_doc = DOC.read_text(encoding="utf-8")
EXAMPLE = re.search(r"```toml\n(.*?)```", _doc[_doc.index("## Complete example"):], re.DOTALL)
SCRIPTS = [BASE] + ([EXAMPLE.group(1)] if EXAMPLE else [])

WORDS = [
    *ACTIONS, *OBSERVATIONS, *RECORD_FORMATS, "KGA", "SA", "KSO", "WI", "DSO", "log", "spare",
    "bag1", "gen", "default", "standby", "master-copy", "master-bag", "generate", "backup",
    "step.1", "step.2", "step.3", "step.13", "step.22", "step.99", "previous.key_count",
    "previous.livecd_sha256", "previous.nope", "drive.log.serial", "drive.spare.serial",
    "signer.standby.host_key", "signer.standby.role", "signer.other.role", "drive:log",
    "drive:master-copy", "password:device-backup", "transcript", "journal", "PT5M", "P14M",
    "PT0S", "P", "RSA/2048", "KSK", "", " ", "0019 E000", "é", "\\u00e9",
]

scalars = st.one_of(
    st.integers(-2, 200).map(str),
    st.sampled_from(["true", "false", "1.5", "-0", "1979-05-27", "07:32:00", "inf", "nan"]),
    st.sampled_from(WORDS).map(lambda w: f'"{w}"'),
    st.text(max_size=8).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(["a", "n", "drive", "quorum"]), inner), max_size=2,
                 unique_by=lambda kv: kv[0])
        .map(lambda kvs: "{" + ", ".join(f"{k} = {v}" for k, v in kvs) + "}"),
    ),
    max_leaves=6,
)
keys = st.sampled_from([
    "n", "actor", "text", "action", "note", "kga_may_complete", "format", "observe", "expect",
    "value", "equals", "drive", "bag", "source", "contents", "serial", "signer", "quorum", "count",
    "duration", "policies", "password", "id", "role", "m", "authorizes", "expires", "label",
    "title", "min", "max", "observer", "trusted", "bogus",
])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SCRIPTS)).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "value", "value", "key", "delete", "duplicate",
                                     "swap", "insert", "chars"]))
        line = lines[i]
        if kind == "value" and " = " in line:
            lines[i] = line.split(" = ", 1)[0] + " = " + draw(values)
        elif kind == "key" and " = " in line:
            lines[i] = draw(keys) + " = " + line.split(" = ", 1)[1]
        elif kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            lines.insert(i, f"{draw(keys)} = {draw(values)}")
        elif kind == "chars":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(st.sampled_from('[]{}"\'=.,#\\ \tx1'),
                                                max_size=3)) + line[at:]
        if not lines:
            lines = [""]
    return "\n".join(lines)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_load_or_raise_script_errors(text: str) -> None:
    try:
        load_script_text(text, "fuzz.toml")
    except ScriptErrors as e:
        last = text.count("\n") + 1
        for error in e.errors:
            assert error.path == "fuzz.toml"
            assert error.line is not None and 1 <= error.line <= last
            assert error.message
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    assert Locator(text).complete


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_loads_or_raises_script_errors(text: str) -> None:
    with contextlib.suppress(ScriptErrors):
        load_script_text(text)
