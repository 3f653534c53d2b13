"""Keyset ("cursor") pagination for the file lists, and the portal's pager links.

A page starts right after the last row of the page before it, found through the ordering's
index: page 2,000 costs what page 1 costs, no `COUNT(*)` is needed, and rows added or deleted
while someone pages through never shift a page (no row shown twice, none skipped). The cursor
names that row's sort-key values; it is signed, so a client can only hand back what it got.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.core.exceptions import ValidationError
from django.core.paginator import Page
from django.core.signing import BadSignature, Signer
from django.db.models import F, Model, Q, QuerySet
from django.db.models.expressions import OrderBy

from .errors import InvalidCursor

_SIGNER = Signer(salt="uploads.pagination.cursor")
_KEY = "cursor_key_{}"
# The first page: a link with an empty cursor (the API) or with none (the portal).
START = ""


@dataclass(frozen=True)
class KeysetPage:
    items: list[Any]
    # Cursors of the neighbouring pages: None when there is none, START for the first page.
    next: str | None
    previous: str | None


@dataclass(frozen=True)
class _SortKey:
    expression: Any
    descending: bool


def _sort_keys(queryset: QuerySet[Any]) -> list[_SortKey]:
    keys = []
    for item in queryset.query.order_by:
        if isinstance(item, str):
            keys.append(_SortKey(F(item.lstrip("-")), item.startswith("-")))
        elif isinstance(item, OrderBy):
            keys.append(_SortKey(item.expression, item.descending))
        else:
            keys.append(_SortKey(item, False))
    # Without a unique last key, rows that tie on the others could be skipped or repeated.
    if not keys or queryset.query.order_by[-1] not in ("pk", "-pk"):
        raise ValueError("keyset pagination needs an ordering that ends with the primary key")
    return keys


def _fingerprint(queryset: QuerySet[Any]) -> str:
    """Ties a cursor to the ordering it was made for: another sort's values mean nothing."""
    spec = "|".join(repr(item) for item in queryset.query.order_by)
    return hashlib.blake2s(spec.encode(), digest_size=4).hexdigest()


def _dump(value: Any) -> Any:
    # Full precision: a cursor rounded to milliseconds would skip or repeat rows.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _encode(fingerprint: str, row: Model, count: int, *, backwards: bool) -> str:
    values = [_dump(getattr(row, _KEY.format(i))) for i in range(count)]
    return _SIGNER.sign_object([fingerprint, int(backwards), *values])


def _decode(token: str, fingerprint: str, queryset: QuerySet[Any]) -> tuple[bool, list[Any]]:
    try:
        data = _SIGNER.unsign_object(token)
    except BadSignature:
        raise InvalidCursor() from None
    annotations = queryset.query.annotations
    names = [_KEY.format(i) for i in range(len(queryset.query.order_by))]
    if not isinstance(data, list) or len(data) != 2 + len(names) or data[0] != fingerprint:
        raise InvalidCursor()
    try:
        values = [
            annotations[name].output_field.to_python(raw)
            for name, raw in zip(names, data[2:], strict=True)
        ]
    except (ValidationError, TypeError, ValueError):
        raise InvalidCursor() from None
    if data[1] not in (0, 1) or any(value is None for value in values):
        raise InvalidCursor()
    return bool(data[1]), values


def _beyond(keys: Sequence[_SortKey], values: Sequence[Any], *, backwards: bool) -> Q:
    """Rows after `values` in the ordering (before them when going backwards)."""

    def op(key: _SortKey) -> str:
        return "lt" if key.descending != backwards else "gt"

    clauses = [
        Q(
            **{_KEY.format(j): values[j] for j in range(i)},
            **{f"{_KEY.format(i)}__{op(key)}": values[i]},
        )
        for i, key in enumerate(keys)
    ]
    # The same bound on the first key alone lets the database range-scan its index.
    bound = Q(**{f"{_KEY.format(0)}__{op(keys[0])}e": values[0]})
    return bound & reduce(or_, clauses)


def keyset_page(queryset: QuerySet[Any], *, cursor: str, size: int) -> KeysetPage:
    """The page of `size` rows of the ordered `queryset` at `cursor` (START: the first page).

    A bad or foreign cursor raises InvalidCursor. Going back to the start serves the first
    page itself, full, rather than the few rows left before the cursor.
    """
    keys = _sort_keys(queryset)
    fingerprint = _fingerprint(queryset)
    keyed = queryset.annotate(**{_KEY.format(i): key.expression for i, key in enumerate(keys)})
    backwards = False
    if cursor != START:
        backwards, values = _decode(cursor, fingerprint, keyed)
        keyed = keyed.filter(_beyond(keys, values, backwards=backwards))
    if backwards:
        keyed = keyed.reverse()
    rows = list(keyed[: size + 1])
    more, rows = len(rows) > size, rows[:size]
    if not backwards:
        return KeysetPage(
            items=rows,
            next=_encode(fingerprint, rows[-1], len(keys), backwards=False) if more else None,
            previous=None
            if cursor == START
            else _encode(fingerprint, rows[0], len(keys), backwards=True)
            if rows
            else START,
        )
    if not more:
        return keyset_page(queryset, cursor=START, size=size)
    rows.reverse()
    return KeysetPage(
        items=rows,
        next=_encode(fingerprint, rows[-1], len(keys), backwards=False),
        previous=_encode(fingerprint, rows[0], len(keys), backwards=True),
    )


# --- The portal's pager ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pager:
    """What templates/uploads/_pager.html shows: the query strings of the neighbouring pages
    ("" when there is none) and a line of text."""

    previous: str
    next: str
    summary: str


def _with(query: str, name: str, value: str) -> str:
    parts = [query] if query else []
    if value:
        parts.append(urlencode({name: value}))
    # The first page has no cursor, but its link must still be a link.
    return "&".join(parts) or f"{name}="


def cursor_pager(page: KeysetPage, query: str) -> Pager:
    """Links for a keyset page; `query` is the listing's query string without the cursor."""
    return Pager(
        previous="" if page.previous is None else _with(query, "cursor", page.previous),
        next="" if page.next is None else _with(query, "cursor", page.next),
        summary="",
    )


def number_pager(page: Page[Any], query: str) -> Pager:
    """Links for a page of Django's Paginator; `query` is the query string without `page`."""
    count = page.paginator.count
    return Pager(
        previous=_with(query, "page", str(page.previous_page_number()))
        if page.has_previous()
        else "",
        next=_with(query, "page", str(page.next_page_number())) if page.has_next() else "",
        summary=f"Page {page.number} of {page.paginator.num_pages} · "
        f"{count} file{'' if count == 1 else 's'}",
    )
