"""The pure ceremony state machine (`machine`), its events and its decisions."""

from ceremony.machine.machine import ACCEPTS, Machine, Refused, State

__all__ = ["ACCEPTS", "Machine", "Refused", "State"]
