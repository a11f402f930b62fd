"""The OpenDNSSEC backend: `OdsSigner` (signer.py) over Debian's OpenDNSSEC 2.1 tools, its config
(ods_config.py), its KASP database reader (ods_kasp.py) and a private installation for tests and
staging (ods_setup.py)."""
