"""The console bus: ZeroMQ with CURVE between the coordinator and the officers' consoles, under
trio. `server.BusServer` and `client.BusClient` are the two ends; `protocol` is the wire and the
pure catch-up logic; `zap` admits enrolled console keys only; `zmqtrio` is the trio adapter."""

from coordinator.bus.client import BusClient, Refused
from coordinator.bus.curve import CurveKeyPair, Enrolment, generate_keypair
from coordinator.bus.server import BusServer, CommandRefused
from coordinator.bus.zmqtrio import TrioSocket

__all__ = [
    "BusClient",
    "BusServer",
    "CommandRefused",
    "CurveKeyPair",
    "Enrolment",
    "Refused",
    "TrioSocket",
    "generate_keypair",
]
