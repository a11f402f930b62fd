"""The coordinator's room: the ceremony script, the pure state machine, the journal, and the
rehearsal driver that carries the machine's decisions out. Nothing here talks to an HSM directly:
HSM work goes through `signer_shim`'s interface."""
