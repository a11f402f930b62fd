"""The pure ceremony state machine (`machine`), its events and decisions, the journal's fold
(`replay`) and the view it shows (`view_of`)."""

from ceremony.machine.machine import ACCEPTS, Machine, Refused

__all__ = ["ACCEPTS", "Machine", "Refused"]
