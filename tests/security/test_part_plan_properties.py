"""Property tests of `plan_parts` against an oracle written from the rules alone.

The rules (S3's multipart limits and ours), as the oracle states them:
  - file_size, part_size and num_parts are whole numbers; a bool is not one;
  - 0 <= file_size <= MAX_FILE_UPLOAD_SIZE (and S3's 5 TiB object limit), else 413;
  - 1 <= num_parts <= 10,000;
  - 1 <= part_size <= 5 GiB, and part_size >= UPLOADS_MIN_PART_SIZE when num_parts > 1;
  - the parts hold the file exactly: (num_parts - 1) * part_size < file_size <= num_parts *
    part_size — plus the one product exception: an empty file is one empty part;
  - with no num_parts, the count is the fewest parts of part_size that hold the file;
  - with no part_size, the server picks one: the configured default, grown in whole MiB until
    the file fits in 10,000 parts.
Generated values crowd the edges: 5 MiB, 5 GiB, 10,000 parts, the size limit, and ±1 of each.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from uploads.errors import InvalidInput, UploadTooLarge
from uploads.services.rules import PartPlan, plan_parts

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

S3_MIN_PART = 5 * MIB
S3_MAX_PART = 5 * GIB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT = 5 * TIB
DEFAULT_PART = 8 * MIB

OK, INVALID, TOO_LARGE = "ok", "invalid", "too_large"

LIMITS = {"5 GiB limit": 5 * GIB, "5 TiB limit": 5 * TIB}


# --- The oracle ------------------------------------------------------------------------------


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _server_part_size(size: int, *, default: int, minimum: int) -> int:
    part = max(default, minimum)
    while size > part * S3_MAX_PARTS:
        part += MIB
    return part


def oracle(size: object, part: object, parts: object, *, limit: int, minimum: int) -> Any:
    """(OK, PartPlan) or INVALID or TOO_LARGE, from the rules in the module docstring."""
    if not _whole(size):
        return INVALID
    assert isinstance(size, int)
    if size < 0:
        return INVALID
    if size > min(limit, S3_MAX_OBJECT):
        return TOO_LARGE
    if part is None:
        part = _server_part_size(size, default=DEFAULT_PART, minimum=minimum)
    elif not _whole(part):
        return INVALID
    assert isinstance(part, int)
    if not 1 <= part <= S3_MAX_PART:
        return INVALID
    if parts is None:
        parts = max(1, _ceil_div(size, part))
    elif not _whole(parts):
        return INVALID
    assert isinstance(parts, int)
    holds = (parts - 1) * part < size <= parts * part or (size == 0 and parts == 1)
    valid = 1 <= parts <= S3_MAX_PARTS and (parts == 1 or part >= minimum) and holds
    return (OK, PartPlan(part_size=part, num_parts=parts)) if valid else INVALID


def actual(size: object, part: object, parts: object) -> Any:
    try:
        return (OK, plan_parts(file_size=size, part_size=part, num_parts=parts))
    except UploadTooLarge:
        return TOO_LARGE
    except InvalidInput:
        return INVALID


# --- Values near every edge ------------------------------------------------------------------


def near(*points: int, spread: int = 2) -> st.SearchStrategy[int]:
    return st.sampled_from(points).flatmap(
        lambda p: st.integers(min_value=p - spread, max_value=p + spread)
    )


EDGE_SIZES = near(0, 1, S3_MIN_PART, 2 * S3_MIN_PART, S3_MAX_PARTS * S3_MIN_PART,
                  S3_MAX_PARTS * DEFAULT_PART, S3_MAX_PART, 5 * GIB, S3_MAX_OBJECT,
                  S3_MAX_PARTS * S3_MAX_PART)  # fmt: skip
SIZES = st.one_of(EDGE_SIZES, st.integers(min_value=-10, max_value=6 * TIB))
PART_SIZES = st.one_of(
    near(1, S3_MIN_PART, DEFAULT_PART, S3_MAX_PART, 10 * MIB),
    st.integers(min_value=-5, max_value=6 * GIB),
)
PART_COUNTS = st.one_of(near(0, 1, 2, S3_MAX_PARTS), st.integers(min_value=-5, max_value=20_000))
NOT_WHOLE = st.sampled_from([True, False, 1.0, 5.5, "5", "", [], {}])


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy, NOT_WHOLE)


@st.composite
def requests(draw: st.DrawFn) -> tuple[object, object, object]:
    size = draw(st.one_of(SIZES, SIZES, SIZES, NOT_WHOLE))
    part = draw(maybe(PART_SIZES))
    # Often the count a client would compute, or one off it, to sit right on the fit edge.
    if _whole(size) and _whole(part) and part > 0 and draw(st.booleans()):  # type: ignore[operator]
        exact = max(1, _ceil_div(size, part))  # type: ignore[arg-type]
        parts: object = draw(st.sampled_from([exact - 1, exact, exact + 1]))
    else:
        parts = draw(maybe(PART_COUNTS))
    return size, part, parts


PROPERTY = settings(
    max_examples=500, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


@pytest.mark.parametrize("limit", LIMITS.values(), ids=LIMITS.keys())
@pytest.mark.parametrize("minimum", [S3_MIN_PART, 1 * KIB], ids=["5 MiB min", "1 KiB min"])
def test_plan_parts_agrees_with_the_rules(limit: int, minimum: int) -> None:
    with override_settings(
        MAX_FILE_UPLOAD_SIZE=limit, UPLOADS_MIN_PART_SIZE=minimum,
        UPLOADS_DEFAULT_PART_SIZE=DEFAULT_PART,
    ):  # fmt: skip
        seen: set[str] = set()

        @PROPERTY
        @given(requests())
        @example((0, None, None))
        @example((S3_MIN_PART, S3_MIN_PART - 1, None))
        @example((S3_MIN_PART + 1, S3_MIN_PART, None))
        @example((S3_MAX_PARTS * S3_MIN_PART, S3_MIN_PART, S3_MAX_PARTS))
        @example((S3_MAX_PARTS * S3_MIN_PART + 1, S3_MIN_PART, None))
        @example((limit, None, None))
        @example((limit + 1, None, None))
        @example((10, True, None))
        @example((True, None, None))
        @example((10, 10, True))
        @example((0, 5, 1))
        @example((0, 5, 2))
        def check(request: tuple[object, object, object]) -> None:
            size, part, parts = request
            expected = oracle(size, part, parts, limit=limit, minimum=minimum)
            assert actual(size, part, parts) == expected, request
            seen.add(expected if isinstance(expected, str) else OK)

        check()
    # The generator reached every outcome, not only the easy refusals.
    assert seen == {OK, INVALID, TOO_LARGE}


@given(size=st.integers(min_value=0, max_value=S3_MAX_OBJECT))
@settings(max_examples=500, deadline=None, database=None)
def test_a_server_chosen_split_is_always_a_valid_s3_upload(size: int) -> None:
    with override_settings(
        MAX_FILE_UPLOAD_SIZE=S3_MAX_OBJECT, UPLOADS_MIN_PART_SIZE=S3_MIN_PART,
        UPLOADS_DEFAULT_PART_SIZE=DEFAULT_PART,
    ):  # fmt: skip
        plan = plan_parts(file_size=size)
    assert 1 <= plan.num_parts <= S3_MAX_PARTS
    assert S3_MIN_PART <= plan.part_size <= S3_MAX_PART
    assert plan.part_size % MIB == 0
    assert (plan.num_parts - 1) * plan.part_size < size <= plan.num_parts * plan.part_size or (
        size == 0 and plan.num_parts == 1
    )
