"""The rehearsal: the whole ceremony on a fresh SoftHSM2 token, with scripted officers and folder
drives, through the same machine, journal and runner as a live ceremony."""
