"""What the local part endpoint refuses; its views say it to the client."""

from __future__ import annotations

from uploads.storage.base import StorageError


class LinkRefused(StorageError):
    """A part or download token that is not ours, or not for this request."""

    kind = "denied"


class LinkExpired(LinkRefused):
    """A token of ours whose time is up."""


class PartRefused(StorageError):
    """A part body the store does not keep; nothing of it was stored."""

    kind = "refused"

    def __init__(self, message: str, *, part_number: int, expected: int, received: int) -> None:
        super().__init__(message)
        self.part_number = part_number
        self.expected = expected
        self.received = received


class LengthMissing(PartRefused):
    """No Content-Length for a part that is not empty."""


class WrongLength(PartRefused):
    """A Content-Length other than the part's signed size."""


class BodyCutShort(PartRefused):
    """The body ended before its Content-Length: the client went away."""


class ChecksumRefused(PartRefused):
    """The body does not match the checksum signed into its link."""
