"""The signer's room: everything that touches the HSM, behind the one `Signer` protocol
(interface.py), with a folder per backend (pkcs11/, opendnssec/) and the picker (backends.py).

It trusts nobody else: operations arrive as plain values with their approvals. The package
re-exports nothing (import from its modules), so importing it loads no backend and no fixture.
"""
