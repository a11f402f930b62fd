"""The PKCS#11 backend: `Pkcs11Signer` (signer.py) over the one worker process that alone calls
python-pkcs11 (worker.py, workerclient.py, wire.py, pool.py), the rules for a token's listing
(inventory.py) and SoftHSM2 tokens (softhsm.py)."""
