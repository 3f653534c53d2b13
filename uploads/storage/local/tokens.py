"""Signed, expiring tokens: the local store's equivalent of S3's presigned URLs.

A part token binds everything the store checks on the PUT (upload, part, exact size, offset,
checksum), so the store needs no database to accept a part, as S3 needs none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.core import signing

from .errors import LinkExpired, LinkRefused

PART_SALT = "uploads.local.part"
DOWNLOAD_SALT = "uploads.local.download"


@dataclass(frozen=True, slots=True)
class PartGrant:
    """What a verified part token allows: one PUT of one part of one upload."""

    file_id: str
    upload_id: str
    part_number: int
    size: int
    # Where the part's bytes sit in the object.
    offset: int
    checksum_algorithm: str = ""
    # Base64 digest the body must match, with a checksum algorithm.
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class DownloadGrant:
    key: str
    file_name: str


def sign(payload: dict[str, object], salt: str) -> str:
    return signing.dumps(payload, salt=salt, compress=False)


def _unsign(token: str, salt: str) -> dict[str, Any]:
    try:
        payload = signing.loads(token, salt=salt)
    except signing.BadSignature as exc:
        raise LinkRefused("bad signature") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), int | float):
        raise LinkRefused("no expiry")
    if payload["e"] < time.time():
        raise LinkExpired("expired")
    return payload


def part_token(grant: PartGrant, *, expires: int) -> str:
    claims: dict[str, object] = {
        "f": grant.file_id,
        "u": grant.upload_id,
        "p": grant.part_number,
        "s": grant.size,
        "o": grant.offset,
        "e": expires,
    }
    if grant.checksum_algorithm:
        claims["a"] = grant.checksum_algorithm
        claims["c"] = grant.checksum
    return sign(claims, PART_SALT)


def read_part_token(token: str) -> PartGrant:
    payload = _unsign(token, PART_SALT)
    try:
        grant = PartGrant(
            file_id=str(payload["f"]),
            upload_id=str(payload["u"]),
            part_number=int(payload["p"]),
            size=int(payload["s"]),
            offset=int(payload["o"]),
            checksum_algorithm=str(payload.get("a", "")),
            checksum=str(payload.get("c", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LinkRefused(f"missing or malformed claim: {exc}") from exc
    if grant.part_number < 1 or grant.size < 0 or grant.offset < 0:
        raise LinkRefused("claims out of range")
    return grant


def download_token(grant: DownloadGrant, *, expires: int) -> str:
    return sign({"k": grant.key, "n": grant.file_name, "e": expires}, DOWNLOAD_SALT)


def read_download_token(token: str) -> DownloadGrant:
    payload = _unsign(token, DOWNLOAD_SALT)
    try:
        return DownloadGrant(key=str(payload["k"]), file_name=str(payload["n"]))
    except KeyError as exc:
        raise LinkRefused(f"missing claim: {exc}") from exc
