"""Who is on a connection, and the rules a relay enforces for the application it serves.

A :class:`Principal` is attached to every connection by whoever accepts it (the
server, from a credential). Its ``tenant`` namespaces documents: a principal of
tenant ``acme`` that opens ``wo/17`` reaches the stored document
``t/acme/wo/17`` and can never name another tenant's.

An :class:`Application` (optional) tells the relay what each principal may read
and write, which fields an update may touch, and how submissions are judged.
Without one, every principal may read and write everything of its tenant and
submissions are answered as not supported. Every method sees the names the
principal uses (``wo/17``), never the namespaced ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pycrdt import Doc

    from .relay import Relay

__all__ = ["ROLES", "Application", "Principal", "UpdateWatch"]

#: office: plans, edits and reads everything of its tenant; viewer: reads only;
#: device: a technician's device; service: the relay's own trusted writers.
ROLES = ("office", "viewer", "device", "service")


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity behind a connection. The default is the open relay's anonymous user."""

    role: str = "office"
    tenant: str = ""
    subject: str = ""  # the technician, for a device
    credential: str = ""  # the credential's id, so that revoking it can cut its connections

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {ROLES}")

    @property
    def namespace(self) -> str:
        """Prefix of the stored names of this principal's documents."""
        return f"t/{self.tenant}/" if self.tenant else ""

    def __str__(self) -> str:
        who = self.subject or self.credential or "anonymous"
        return f"{self.role}:{who}@{self.tenant}" if self.tenant else f"{self.role}:{who}"


class UpdateWatch(Protocol):
    """Collects what transactions change in one document, between two ``collect`` calls."""

    def collect(self) -> Sequence[Any]:
        """The changes recorded since the last call (and forget them)."""
        ...

    def unknown_roots(self, doc: Doc[Any]) -> list[str]:
        """Root types of ``doc`` the application does not know (created by a stray writer)."""
        ...

    def close(self) -> None:
        """Stop watching."""
        ...


class Application(Protocol):
    """The rules of what a relay serves. Methods may be called concurrently for different
    connections; they must not block the event loop for long."""

    def bind(self, relay: Relay) -> None:
        """Called once when the relay starts, before any connection."""
        ...

    async def authorize(self, principal: Principal, document: str, *, write: bool) -> None:
        """Return if ``principal`` may read (or write) ``document``; raise Forbidden if not."""
        ...

    def watch(self, tenant: str, document: str, doc: Doc[Any]) -> UpdateWatch | None:
        """A watch over a document the relay loaded, if its updates have field rules."""
        ...

    def check(
        self, principal: Principal, document: str, changes: Sequence[Any], doc: Doc[Any]
    ) -> list[str]:
        """The fields among ``changes`` that ``principal`` may not write (empty: accept).
        ``doc`` already holds the update; a refused update is discarded with it."""
        ...

    async def submit(
        self, principal: Principal, document: str, key: str, body: str, doc: Doc[Any]
    ) -> str:
        """Judge a submission of ``document`` (whose state is ``doc``, everything before it
        committed) and return the JSON answer for the device. Retries of ``key`` must get
        the same answer (record it with the relay's store)."""
        ...
