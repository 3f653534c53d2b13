"""The size and part arithmetic of `plan_parts`: one place for every client's limits."""

from __future__ import annotations

import math

import pytest

from uploads.errors import InvalidInput, UploadTooLarge
from uploads.services.rules import PartPlan, default_part_size, plan_parts
from uploads.storage.base import S3_MAX_OBJECT_SIZE, S3_MAX_PART_SIZE, S3_MAX_PARTS

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB


@pytest.fixture(autouse=True)
def s3_limits(settings):
    """S3's real limits: 5 MiB minimum part, objects up to 5 TiB."""
    settings.UPLOADS_MIN_PART_SIZE = 5 * MIB
    settings.UPLOADS_DEFAULT_PART_SIZE = 8 * MIB
    settings.MAX_FILE_UPLOAD_SIZE = S3_MAX_OBJECT_SIZE
    return settings


# --- Minimum part size -----------------------------------------------------------------------


def test_exactly_min_part_size_one_part():
    assert plan_parts(file_size=5 * MIB, part_size=5 * MIB) == PartPlan(5 * MIB, 1)


def test_one_byte_over_min_part_size_makes_two_parts():
    assert plan_parts(file_size=5 * MIB + 1, part_size=5 * MIB) == PartPlan(5 * MIB, 2)


def test_part_below_min_refused_when_more_than_one_part():
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=5 * MIB, part_size=5 * MIB - 1)
    assert info.value.extra == {"field": "part_size"}
    assert "5.0 MiB (5,242,880 bytes)" in info.value.message


def test_part_below_min_allowed_for_a_single_part():
    # Only non-last parts must reach S3's minimum: a small file is one small part.
    assert plan_parts(file_size=1000, part_size=1000) == PartPlan(1000, 1)
    assert plan_parts(file_size=5 * MIB - 1, part_size=5 * MIB - 1) == PartPlan(5 * MIB - 1, 1)


def test_part_size_larger_than_file_is_one_part():
    assert plan_parts(file_size=10, part_size=5 * MIB) == PartPlan(5 * MIB, 1)


def test_min_part_size_follows_the_setting(settings):
    settings.UPLOADS_MIN_PART_SIZE = 1024
    assert plan_parts(file_size=2048, part_size=1024) == PartPlan(1024, 2)
    with pytest.raises(InvalidInput):
        plan_parts(file_size=2048, part_size=1023)


# --- Maximum part size -----------------------------------------------------------------------


def test_part_size_of_exactly_5_gib_is_allowed():
    assert plan_parts(file_size=6 * GIB, part_size=S3_MAX_PART_SIZE) == PartPlan(5 * GIB, 2)


def test_part_size_over_5_gib_is_refused():
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=6 * GIB, part_size=S3_MAX_PART_SIZE + 1)
    assert info.value.extra == {"field": "part_size"}


@pytest.mark.parametrize("part_size", [0, -1, -5 * MIB])
def test_non_positive_part_size_is_refused(part_size):
    with pytest.raises(InvalidInput):
        plan_parts(file_size=10, part_size=part_size)


# --- Part count ------------------------------------------------------------------------------


def test_exactly_10000_parts_is_allowed():
    plan = plan_parts(file_size=S3_MAX_PARTS * 5 * MIB, part_size=5 * MIB)
    assert plan == PartPlan(5 * MIB, S3_MAX_PARTS)


def test_10001_parts_is_refused():
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=S3_MAX_PARTS * 5 * MIB + 1, part_size=5 * MIB)
    assert "10001" in info.value.message
    assert "10000" in info.value.message


def test_num_parts_over_10000_is_refused_even_when_consistent(settings):
    settings.UPLOADS_MIN_PART_SIZE = 1
    with pytest.raises(InvalidInput):
        plan_parts(file_size=10_001, part_size=1, num_parts=10_001)


@pytest.mark.parametrize(
    ("file_size", "part_size", "num_parts"),
    [
        (10 * MIB, 5 * MIB, 2),
        (10 * MIB + 1, 5 * MIB, 3),
        (1, 5 * MIB, 1),
        (0, 5 * MIB, 1),
    ],
)
def test_consistent_num_parts_is_accepted(file_size, part_size, num_parts):
    assert plan_parts(file_size=file_size, part_size=part_size, num_parts=num_parts) == PartPlan(
        part_size, num_parts
    )


@pytest.mark.parametrize(
    ("file_size", "part_size", "num_parts"),
    [
        (10 * MIB, 5 * MIB, 1),  # too few to hold the bytes
        (10 * MIB, 5 * MIB, 3),  # a last part with nothing in it
        (10 * MIB + 1, 5 * MIB, 2),
        (0, 5 * MIB, 2),
        (10, 5 * MIB, 0),
        (10, 5 * MIB, -1),
    ],
)
def test_inconsistent_num_parts_is_refused(file_size, part_size, num_parts):
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=file_size, part_size=part_size, num_parts=num_parts)
    assert info.value.extra == {"field": "num_parts"}


# --- File size -------------------------------------------------------------------------------


def test_zero_bytes_is_one_part():
    plan = plan_parts(file_size=0)
    assert plan.num_parts == 1
    assert plan.part_size >= 5 * MIB


def test_negative_file_size_is_refused():
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=-1)
    assert info.value.extra == {"field": "file_size"}


def test_file_size_at_the_configured_limit_is_allowed(settings):
    settings.MAX_FILE_UPLOAD_SIZE = 100 * MIB
    assert plan_parts(file_size=100 * MIB).num_parts == math.ceil(100 * MIB / (8 * MIB))


def test_file_size_over_the_configured_limit_is_too_large(settings):
    settings.MAX_FILE_UPLOAD_SIZE = 100 * MIB
    with pytest.raises(UploadTooLarge) as info:
        plan_parts(file_size=100 * MIB + 1)
    assert info.value.extra == {"max_file_size": 100 * MIB}


def test_s3_object_limit_caps_a_larger_setting(settings):
    settings.MAX_FILE_UPLOAD_SIZE = 10 * TIB
    plan = plan_parts(file_size=S3_MAX_OBJECT_SIZE)
    assert plan.num_parts <= S3_MAX_PARTS
    with pytest.raises(UploadTooLarge) as info:
        plan_parts(file_size=S3_MAX_OBJECT_SIZE + 1)
    assert info.value.extra == {"max_file_size": S3_MAX_OBJECT_SIZE}


@pytest.mark.parametrize("value", [True, False, "10", 10.0, 1.5, None, [10]])
def test_file_size_must_be_a_real_integer(value):
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=value)
    assert info.value.extra == {"field": "file_size"}


@pytest.mark.parametrize("value", [True, "5242880", 5.0 * MIB])
def test_part_size_must_be_a_real_integer(value):
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=10, part_size=value)
    assert info.value.extra == {"field": "part_size"}


def test_num_parts_true_is_not_one():
    with pytest.raises(InvalidInput) as info:
        plan_parts(file_size=10, part_size=5 * MIB, num_parts=True)
    assert info.value.extra == {"field": "num_parts"}


# --- Default part size -----------------------------------------------------------------------


def test_default_part_size_is_the_setting_for_ordinary_files():
    assert default_part_size(0) == 8 * MIB
    assert default_part_size(8 * MIB * S3_MAX_PARTS) == 8 * MIB


def test_default_part_size_never_below_the_minimum(settings):
    settings.UPLOADS_DEFAULT_PART_SIZE = 1 * MIB
    assert default_part_size(10) == 5 * MIB


def test_default_part_size_grows_in_whole_mib_past_10000_parts():
    size = default_part_size(8 * MIB * S3_MAX_PARTS + 1)
    assert size == 9 * MIB
    assert size % MIB == 0


@pytest.mark.parametrize(
    "file_size",
    [
        0,
        1,
        8 * MIB * S3_MAX_PARTS,
        8 * MIB * S3_MAX_PARTS + 1,
        100 * GIB + 7,
        1 * TIB - 1,
        3 * TIB + 12345,
        S3_MAX_OBJECT_SIZE - 1,
        S3_MAX_OBJECT_SIZE,
    ],
)
def test_default_plan_always_fits_in_10000_parts(file_size):
    plan = plan_parts(file_size=file_size)
    assert plan.part_size == default_part_size(file_size)
    assert 1 <= plan.num_parts <= S3_MAX_PARTS
    assert 5 * MIB <= plan.part_size <= S3_MAX_PART_SIZE
    # The parts hold the file exactly: no missing bytes and no empty trailing part.
    assert (plan.num_parts - 1) * plan.part_size < file_size or file_size == 0
    assert file_size <= plan.num_parts * plan.part_size
