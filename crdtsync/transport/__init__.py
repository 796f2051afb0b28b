"""Transports: the :class:`Channel` seam, an in-memory pair, and a websockets client."""

from .base import Channel, Connector
from .memory import MemoryChannel, memory_channel_pair
from .websocket import WebSocketChannel, websocket_connector

__all__ = [
    "Channel",
    "Connector",
    "MemoryChannel",
    "WebSocketChannel",
    "memory_channel_pair",
    "websocket_connector",
]
