"""The officers' room: what an officer's console does on their behalf. For now the scripted
officers of the rehearsal; the prompt_toolkit consoles come in a later issue and sign
the same way."""
