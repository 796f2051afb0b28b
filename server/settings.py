"""Relay settings: command-line flags override ``CRDTSYNC_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RelaySettings"]


class RelaySettings(BaseSettings):
    """Everything a relay deployment configures. Environment: ``CRDTSYNC_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CRDTSYNC_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    db: Path = Path("./crdtsync.db")
    token: SecretStr | None = None
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    max_frame_size: int = Field(16 * 1024 * 1024, ge=1024)
    max_update_size: int = Field(8 * 1024 * 1024, ge=1024)
    send_queue_size: int = Field(8192, ge=16)
    idle_eviction_seconds: float = Field(30.0, gt=0)
    #: How long a technician's devices may still send their changes to a work order that
    #: was reassigned away from them (they may have been offline when it happened).
    release_retention_days: float = Field(7.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    #: Changes buffered per live event stream before a slow client is dropped.
    event_queue_size: int = Field(1000, ge=1)
    event_heartbeat_seconds: float = Field(15.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_concurrency: int = Field(8, ge=1)
    #: Failed attempts after which a delivery counts as failing (it is still retried).
    webhook_failing_after: int = Field(10, ge=1)
    webhook_retry_initial_seconds: float = Field(5.0, gt=0)
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    #: Serve Prometheus metrics at ``/metrics``.
    metrics: bool = True
    #: On shutdown, wait this long for open HTTP responses before cutting them.
    shutdown_grace_seconds: int = Field(5, ge=1)
