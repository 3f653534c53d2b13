"""When and how long to wait before trying a request again."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

# 429 and 5xx mean "not now": S3 answers 503 SlowDown and 500 InternalError on busy prefixes.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` tries in all, with exponential backoff and full jitter between them."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 20.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        # Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog): parts that failed
        # together (one network blip) come back spread out instead of in one burst.
        ceiling = min(self.max_backoff, self.backoff * 2**retry)
        delay = random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header (the HTTP-date form is not worth parsing)."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
