"""Test and staging fixtures, never imported by `keyrite shim` or `keyrite coordinator`: seeding a
rehearsal token (fixture.py) and standing a shim up on this machine (standup.py)."""
