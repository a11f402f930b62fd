"""The backend picker: which `Signer` a signer config file asks for.

`[signer] backend = "opendnssec"` gives the OpenDNSSEC backend (`signer_shim.opendnssec`); no
`backend` key gives the PKCS#11 backend (`signer_shim.pkcs11`). Each backend is imported only when
it is picked, so python-pkcs11 stays out of ODS-only use.
"""

from __future__ import annotations

from pathlib import Path

from keyrite.configfile import parse_toml
from signer_shim.config import ConfigError, SignerConfig, read_file
from signer_shim.interface import Signer
from signer_shim.opendnssec.ods_config import OdsConfig, load_ods_config


def load_signer_config(path: Path) -> SignerConfig | OdsConfig:
    """The config a signer file describes, read strictly: `[signer] backend = "opendnssec"` gives
    an OdsConfig; no `backend` key gives the PKCS#11 SignerConfig (unchanged); anything else is
    an error naming the file. Both have `host_key_path` and `state_dir`."""
    text, source, _base = read_file(path)
    doc = parse_toml(text, source)
    signer = doc.get("signer")
    backend = signer.get("backend") if isinstance(signer, dict) else None
    if backend is None:
        return SignerConfig.load(Path(path))
    if backend == "opendnssec":
        return load_ods_config(Path(path))
    raise ConfigError(f"{source}: signer.backend {backend!r} is unknown (known: 'opendnssec'; "
                      "leave it out for PKCS#11)")


def signer_for(config: SignerConfig | OdsConfig) -> Signer:
    """The signer for a config `load_signer_config` returned."""
    if isinstance(config, OdsConfig):
        from signer_shim.opendnssec.signer import OdsSigner

        return OdsSigner(config)
    from signer_shim.pkcs11.signer import Pkcs11Signer  # python-pkcs11 stays out of ODS-only use

    return Pkcs11Signer(config)


def open_signer(path: Path) -> Signer:
    """The signer a config file describes (`load_signer_config`, then `signer_for`)."""
    return signer_for(load_signer_config(path))


__all__ = ["load_signer_config", "open_signer", "signer_for"]
