"""A private opencryptoki (3.8) software token for tests: the tests' name for staging/okc.py,
where the reusable part lives (the rehearsal runs one too, and production code never imports
tests/). The docstring there says why namespaces, how the signer reaches it and how it stops."""

from __future__ import annotations

from staging.okc import (
    DEFAULT_SO_PIN,
    MODULE,
    SLOT,
    OkcToken,
    has_cap_sys_admin,
    okc_token,
    restart,
    start,
    stop,
    unavailable,
)

__all__ = ["DEFAULT_SO_PIN", "MODULE", "SLOT", "OkcToken", "has_cap_sys_admin", "okc_token",
           "restart", "start", "stop", "unavailable"]
