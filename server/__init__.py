"""The relay deployment: ASGI app, settings and the ``crdtsync-relay`` command."""

from .app import create_app
from .settings import RelaySettings

__all__ = ["RelaySettings", "create_app"]
