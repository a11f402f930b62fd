"""Validation patterns take ASCII digits only, and whole strings only.

Python's `\\d` matches every Unicode decimal digit (`١٤`, `１０`), `int()` converts them, and `$`
matches before a final newline: a duration, a count, a backup date or a step reference written
with any of those used to pass as the ASCII value it resembles. ISO 8601 and the ceremony's own
formats are ASCII.
"""

from __future__ import annotations

import pytest

from ceremony.durations import DurationError, parse_duration
from ceremony.script.errors import ScriptErrors
from ceremony.script.formats import check_value
from ceremony.script.load import bundled_script_path, load_script_text
from signer_shim import planning
from signer_shim.interface import SignerError

TOKEN = "d34d-ba64-0000-1111-2222-3333-4444-5555-6666-7777"


@pytest.mark.parametrize("text", [
    "P١٤M",            # Arabic-Indic digits
    "PT１０M",          # fullwidth digits
    "P1٤M",
    "P14M\n",          # `$` matched before a final newline
    "P" + "1" * 5000 + "Y",  # int() refuses more than 4300 digits with a bare ValueError
])
def test_a_duration_is_ascii_digits_only(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_ascii_durations_still_parse() -> None:
    assert parse_duration("P14M").seconds == 434 * 86400
    assert parse_duration("PT15M").seconds == 900
    assert parse_duration("P1Y2M3W4DT5H6M7S").text == "P1Y2M3W4DT5H6M7S"


@pytest.mark.parametrize(("fmt", "value"), [
    ("count", "١٤"),
    ("count", "１４０"),
    ("datetime", "٢٠١٢-12-05T09:28"),
    ("datetime", "2012-12-05T09:２８"),
])
def test_record_formats_take_ascii_digits_only(fmt: str, value: str) -> None:
    assert check_value(fmt, value) is None


@pytest.mark.parametrize("date", ["２０２６-11-27", "2026-1١-27", "2026-11-27\n"])
def test_a_backup_date_is_ascii_digits_only(date: str) -> None:
    with pytest.raises(SignerError):
        planning.plan_backup(TOKEN, date)
    op = {"op": "backup", "token": TOKEN, "file": f"key-backup-{date}.tar.gz"}
    with pytest.raises(SignerError):
        planning.check_operation(op, TOKEN)


def test_a_locator_with_a_final_newline_is_not_a_locator() -> None:
    op = {"op": "purge", "token": TOKEN, "delete": ["0" * 32 + "\n"]}
    with pytest.raises(SignerError, match="locators"):
        planning.check_operation(op, TOKEN)


@pytest.mark.parametrize("ref", ["step.١٩", "step.1" + "9" * 5000])
def test_a_step_reference_is_a_short_ascii_number(ref: str) -> None:
    text = bundled_script_path().read_text()
    assert 'expect = "step.19"' in text
    with pytest.raises(ScriptErrors) as e:
        load_script_text(text.replace('expect = "step.19"', f'expect = "{ref}"', 1))
    assert "is not a reference" in str(e.value)
