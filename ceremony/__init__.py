"""The closed ceremony core: script, machine, journal records, roster, view model, approvals and
digests, importing only the standard library and `cryptography` (docs/architecture.md)."""
