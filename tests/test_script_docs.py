"""docs/script-format.md against the schema: its generated tables are current and complete."""

from __future__ import annotations

from pathlib import Path

from ceremony.script import reference
from ceremony.script.model import ACTIONS, OBSERVATIONS, PARAMETERS
from ceremony.script.schema import PARAMETER_KEYS, TABLES

DOC = Path(__file__).resolve().parent.parent / "docs" / "script-format.md"


def test_generated_tables_are_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert reference.render(text) == text, (
        "run: python -m ceremony.script.reference --write docs/script-format.md")


def test_every_table_and_rule_block_is_in_the_docs() -> None:
    names = reference.block_names(DOC.read_text(encoding="utf-8"))
    assert sorted(names) == sorted(reference.BLOCKS)
    assert len(names) == len(set(names))
    assert {f"keys {t.header}" for t in TABLES} <= set(names)


def test_rendered_tables_name_every_action_observation_and_parameter() -> None:
    actions, observations, parameters = (
        reference.BLOCKS[n]() for n in ("actions", "observations", "parameters"))
    assert all(f"| `{a}` |" in actions for a in ACTIONS)
    assert all(f"| `{o}` |" in observations for o in OBSERVATIONS)
    assert all(f"| `{k.name}` |" in parameters for k in PARAMETER_KEYS)
    assert set(PARAMETERS) == set(ACTIONS)


def test_check_mode_fails_on_a_stale_table(tmp_path: Path) -> None:
    stale = tmp_path / "doc.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("| `signoff` |", "| `sign-off` |"))
    assert reference.main([str(stale)]) == 1
    assert reference.main([str(stale), "--write"]) == 0
    assert reference.main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
