"""HTTP API: parse → service or selector → response schema. No rules live here."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseRedirect
from ninja import Router, Schema, Status
from ninja.pagination import PaginationBase, paginate
from pydantic import Field

from . import selectors
from .auth import session_auth, token_auth
from .errors import InvalidInput
from .pagination import keyset_page
from .schemas import (
    ErrorOut,
    FileOut,
    FileUpdateIn,
    PresignIn,
    PresignOut,
    SetParentIn,
    UploadCompleteIn,
    UploadCreateIn,
    UploadInitiatedOut,
    UploadPartsOut,
)
from .services.completion import upload_complete
from .services.files import file_delete, file_download_url, file_set_parent, file_update
from .services.uploads import upload_abort, upload_initiate, upload_parts, upload_presign
from .storage.base import CompletedPart

# Bearer JWT for API clients, or the portal's session (with its CSRF header) — same endpoints.
router = Router(tags=["uploads"], auth=[token_auth, session_auth])

# Every error status an endpoint can answer, so the OpenAPI schema documents them all: 403 is a
# session without its CSRF header, 422 a body or query of the wrong shape, 507 a full local disk.
ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    415: ErrorOut,
    422: ErrorOut,
    503: ErrorOut,
    507: ErrorOut,
}


class PageNumber(PaginationBase):
    """`count/next/previous/results`, as the spec's clients read, by page number or by cursor.

    `?page=N` counts the rows and walks past the earlier pages. `?cursor=` (empty for the first
    page) pages by keyset instead: as fast deep in the list as at its start, stable while rows
    are added, and `count` is null (nothing is counted); `next`/`previous` carry cursors.
    """

    class Input(Schema):
        page: int | None = Field(None, ge=1)
        page_size: int = Field(50, ge=1, le=500)
        cursor: str | None = None

    class Output(Schema):
        count: int | None
        next: str | None
        previous: str | None
        results: list[Any]

    items_attribute = "results"

    def paginate_queryset(
        self, queryset: Any, pagination: Input, request: HttpRequest, **params: Any
    ) -> dict[str, Any]:
        if pagination.cursor is not None:
            if pagination.page is not None:
                raise InvalidInput("Give either page or cursor, not both.", {"field": "cursor"})
            page = keyset_page(queryset, cursor=pagination.cursor, size=pagination.page_size)
            return {
                "count": None,
                "next": _list_url(request, "cursor", page.next),
                "previous": _list_url(request, "cursor", page.previous),
                "results": page.items,
            }
        number = pagination.page or 1
        offset = (number - 1) * pagination.page_size
        count = queryset.count()
        # Past the end there is nothing to fetch; a huge page would also overflow SQL's OFFSET.
        results = list(queryset[offset : offset + pagination.page_size]) if offset < count else []
        more = offset + pagination.page_size < count
        return {
            "count": count,
            "next": _list_url(request, "page", str(number + 1) if more else None),
            "previous": _list_url(request, "page", str(number - 1) if number > 1 else None),
            "results": results,
        }


def _list_url(request: HttpRequest, name: str, value: str | None) -> str | None:
    """This listing's URL, filters kept, at another page or cursor (None: there is none)."""
    if value is None:
        return None
    query = request.GET.copy()
    query[name] = value
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


@router.post("/files/uploads", response={201: UploadInitiatedOut, **ERRORS})
def initiate_upload(request: HttpRequest, payload: UploadCreateIn) -> Any:
    return Status(201, upload_initiate(user=request.user, **payload.dict()))


@router.post("/files/uploads/{file_id}/complete", response={200: FileOut, **ERRORS})
def complete_upload(request: HttpRequest, file_id: str, payload: UploadCompleteIn) -> Any:
    parts = [CompletedPart(p["part_number"], p["etag"]) for p in payload.parts]
    return upload_complete(user=request.user, file_id=file_id, parts=parts)


@router.delete("/files/uploads/{file_id}", response={204: None, **ERRORS})
def abort_upload(request: HttpRequest, file_id: str) -> Any:
    upload_abort(user=request.user, file_id=file_id)
    return Status(204, None)


@router.get("/files/uploads/{file_id}/parts", response={200: UploadPartsOut, **ERRORS})
def list_upload_parts(request: HttpRequest, file_id: str) -> Any:
    return upload_parts(user=request.user, file_id=file_id)


@router.post("/files/uploads/{file_id}/presign", response={200: PresignOut, **ERRORS})
def presign_parts(request: HttpRequest, file_id: str, payload: PresignIn) -> Any:
    return upload_presign(
        user=request.user,
        file_id=file_id,
        part_numbers=payload.part_numbers,
        checksums=payload.checksums,
    )


@router.get("/files", response={200: list[FileOut], **ERRORS}, url_name="file_list")
@paginate(PageNumber)
def list_files(
    request: HttpRequest,
    status: str | None = None,
    parent_content_type: str | None = None,
    parent_object_id: str | None = None,
) -> Any:
    return selectors.file_list_for_user(
        user=request.user,
        status=status,
        parent_content_type=parent_content_type,
        parent_object_id=parent_object_id,
    )


@router.get("/files/{file_id}", response={200: FileOut, **ERRORS}, url_name="file_detail")
def get_file(request: HttpRequest, file_id: str) -> Any:
    return selectors.file_get_for_user(user=request.user, file_id=file_id)


@router.patch("/files/{file_id}", response={200: FileOut, **ERRORS})
def update_file(request: HttpRequest, file_id: str, payload: FileUpdateIn) -> Any:
    return file_update(user=request.user, file_id=file_id, **payload.dict(exclude_unset=True))


@router.delete("/files/{file_id}", response={204: None, **ERRORS})
def delete_file(request: HttpRequest, file_id: str) -> Any:
    file_delete(user=request.user, file_id=file_id)
    return Status(204, None)


@router.post("/files/{file_id}/set-parent", response={200: FileOut, **ERRORS})
def set_parent(request: HttpRequest, file_id: str, payload: SetParentIn) -> Any:
    return file_set_parent(user=request.user, file_id=file_id, **payload.dict())


@router.get("/files/{file_id}/download", response={302: None, **ERRORS}, url_name="file_download")
def download_file(request: HttpRequest, file_id: str) -> Any:
    return HttpResponseRedirect(file_download_url(user=request.user, file_id=file_id))
