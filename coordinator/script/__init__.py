"""Ceremony scripts: the typed model (`model`), the strict TOML loader (`load`), and the bundled
seed ceremony."""

from coordinator.script.model import (
    ACTIONS,
    OBSERVATIONS,
    Bag,
    Ceremony,
    Drive,
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
    "ACTIONS", "OBSERVATIONS", "Bag", "Ceremony", "Drive", "Material", "Policy", "Quorum", "Role",
    "Script", "Section", "Signer", "Step",
]
