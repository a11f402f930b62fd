"""The signer's room: everything that touches the HSM. It trusts nobody else: operations arrive as
plain values with their approvals, and the HSM is reached only through one worker process."""

from signer_shim.backup import BackupError, restore_backup
from signer_shim.config import ConfigError, SignerConfig
from signer_shim.fixture import Figures, RehearsalToken, seed_rehearsal_token
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import Inventory, KeyInfo, PolicyKeys, Progress, Signer, SignerError
from signer_shim.local import LocalSigner

__all__ = [
    "BackupError", "ConfigError", "Figures", "Inventory", "KeyInfo", "LocalSigner", "PolicyKeys",
    "Progress", "RehearsalToken", "Signer", "SignerConfig", "SignerError", "ensure_host_key",
    "restore_backup", "seed_rehearsal_token",
]
