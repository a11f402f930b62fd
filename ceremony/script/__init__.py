"""Ceremony scripts: the typed model (`model`), the strict TOML loader (`load`), the value formats
(`formats`), and the bundled seed ceremony."""

from ceremony.script.errors import ScriptError, ScriptErrors
from ceremony.script.formats import check_value
from ceremony.script.load import bundled_script_path, load_script, load_script_text
from ceremony.script.model import (
    ACTIONS,
    OBSERVATIONS,
    PARAMETERS,
    RECORD_FORMATS,
    Bag,
    Ceremony,
    Drive,
    KeySpec,
    Material,
    Policy,
    Quorum,
    Role,
    Script,
    Section,
    Signer,
    Step,
)

__all__ = [
    "ACTIONS", "OBSERVATIONS", "PARAMETERS", "RECORD_FORMATS", "Bag", "Ceremony", "Drive",
    "KeySpec", "Material", "Policy", "Quorum", "Role", "Script", "ScriptError", "ScriptErrors",
    "Section", "Signer", "Step", "bundled_script_path", "check_value", "load_script",
    "load_script_text",
]
