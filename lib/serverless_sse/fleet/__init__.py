"""Fleet metrics: a fleet of servers (simulated, or the host), streamed as ``server_update``
events, and controlled with actions whose results arrive as ``control_result`` events."""

from .fleet import ControlResult, Fleet, FleetSource, server_channel
from .model import ACTIONS, Control, ControlAction, ControlRequest, ServerSpec, Snapshot, changes
from .ticker import TICKS, FleetTicker, ticks_epoch

__all__ = [
    "ACTIONS",
    "TICKS",
    "Control",
    "ControlAction",
    "ControlRequest",
    "ControlResult",
    "Fleet",
    "FleetSource",
    "FleetTicker",
    "ServerSpec",
    "Snapshot",
    "changes",
    "server_channel",
    "ticks_epoch",
]
