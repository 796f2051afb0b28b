"""Attachments: content-addressed blobs of the tenant, by sha256.

| endpoint | roles |
|---|---|
| ``GET /attachments/{sha256}`` | office, viewer: any blob of the tenant; device: see below |
| ``PUT /attachments/{sha256}`` | office: upload (the bytes must hash to ``sha256``; idempotent) |

A device gets only the blobs that its assigned work orders refer to. A blob is
served with the MIME type of an attachment that refers to it (from the
work-order views), else ``application/octet-stream``; its sha256 is its
``ETag`` and it never changes. Devices upload their photos over the sync
protocol (resumable chunks); this upload is for the office's own files.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response

from crdtsync import BlobStore, blob_key
from crdtsync.store import sha256_hex

from .access import Anyone, relay_of, views_of, visible_ids
from .auth import API_PREFIX, OfficeRole
from .models import UploadOut
from .problems import PROBLEM_RESPONSES, Problem, problem_doc

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["attachments"], responses=PROBLEM_RESPONSES)

Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256")]


def _blobs(request: Request) -> BlobStore:
    store = relay_of(request).store
    if not isinstance(store, BlobStore):  # pragma: no cover (the app's store keeps blobs)
        raise Problem(404, "not_found", "this relay keeps no blobs")
    return store


@router.get(
    "/attachments/{sha256}",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "The bytes, with the attachment's MIME type",
        },
        404: problem_doc("No such blob for this credential"),
    },
)
async def get_attachment(request: Request, sha256: Sha256, principal: Anyone) -> Response:
    """The blob's bytes. A device gets only what its assigned work orders refer to."""
    allowed = await visible_ids(request, principal)
    found = await views_of(request).attachment(principal.tenant_id, sha256, allowed)
    if allowed is not None and found is None:
        raise Problem(404, "not_found", f"no attachment {sha256}")
    data = await _blobs(request).get_blob(blob_key(principal.tenant_id, sha256))
    if data is None:
        raise Problem(404, "not_found", f"no attachment {sha256} (not uploaded yet?)")
    mime, name = found if found is not None else ("application/octet-stream", sha256)
    headers = {
        "ETag": f'"{sha256}"',
        "Cache-Control": "private, max-age=31536000, immutable",
        "Content-Disposition": f"inline; filename*=UTF-8''{_quoted(name)}",
    }
    return Response(data, media_type=mime, headers=headers)


def _quoted(name: str) -> str:
    return quote(name, safe="")


@router.put(
    "/attachments/{sha256}",
    response_model=UploadOut,
    responses={
        200: {"model": UploadOut, "description": "The relay held it already"},
        201: {"model": UploadOut, "description": "Stored"},
        411: problem_doc("Content-Length missing"),
        413: problem_doc("Larger than the relay takes"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def put_attachment(request: Request, sha256: Sha256, principal: OfficeRole) -> Response:
    """Store the request body as the blob ``sha256`` (422 ``sha256_mismatch`` when the bytes
    hash to something else). Idempotent: 201 when stored, 200 when it was there."""
    limit = relay_of(request).config.max_blob_size
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise Problem(411, "length_required", "send the blob with a Content-Length")
    if int(declared) > limit:
        raise Problem(413, "too_large", f"a blob may be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, "too_large", f"a blob may be at most {limit} bytes")
    data = bytes(body)
    if sha256_hex(data) != sha256:
        raise Problem(422, "sha256_mismatch", "the bytes do not hash to the sha256 in the path")
    store = _blobs(request)
    key = blob_key(principal.tenant_id, sha256)
    existed = not await store.missing_blobs([key])
    if not existed:
        progress = await store.put_blob_chunk(key, sha256, len(data), 0, data)
        if not progress.complete:  # pragma: no cover (the whole blob in one verified chunk)
            raise Problem(422, "sha256_mismatch", "the store refused the bytes")
    out = UploadOut(sha256=sha256, size=len(data), created=not existed)
    return Response(
        out.model_dump_json(), status_code=200 if existed else 201, media_type="application/json"
    )
