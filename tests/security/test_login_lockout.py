"""Login lockout (django-axes) on every door a password goes through: the portal's sign-in, the
admin's, and the API's token pair. Failures count per username *and* client address, so an
attacker locks out only their own guesses: the same user signs in from elsewhere, and other users
sign in from anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

ATTACKER, VICTIM_HOME, ELSEWHERE = "203.0.113.66", "198.51.100.10", "192.0.2.44"


@dataclass(frozen=True)
class Door:
    path: str
    api: bool = False

    def attempt(self, username: str, password: str, address: str) -> Any:
        client = Client(REMOTE_ADDR=address)
        data = {"username": username, "password": password}
        if self.api:
            return client.post(self.path, data, content_type="application/json")
        return client.post(self.path, data)

    def signed_in(self, response: Any) -> bool:
        if self.api:
            return response.status_code == 200 and "access" in response.json()
        # Django's login views redirect once the password was right.
        return response.status_code == 302


DOORS = {
    "portal": Door("/accounts/login/"),
    "admin": Door("/admin/login/"),
    "token": Door("/v1/auth/token/pair", api=True),
}


@pytest.fixture(autouse=True)
def accounts(db: Any, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 5
    settings.AUTH_TOKEN_THROTTLE_RATE = ""  # the per-address throttle is tested on its own
    make = get_user_model().objects.create_user
    make("victim", password="victim-pass", is_staff=True)
    make("bystander", password="bystander-pass", is_staff=True)


def assert_locked(door: Door, response: Any) -> None:
    assert response.status_code == 429, response.content
    if door.api:
        body = response.json()
        assert body["code"] == "locked_out", body
        assert set(body) <= {"detail", "code", "extra"} and "Too many" in body["detail"]
        assert int(response["Retry-After"]) > 0
    else:
        assert "Too many failed sign-ins" in response.content.decode()


@pytest.mark.parametrize("door", DOORS.values(), ids=DOORS.keys())
def test_guessing_locks_out_that_user_from_that_address_only(door: Door) -> None:
    for _ in range(4):
        response = door.attempt("victim", "guess", ATTACKER)
        assert response.status_code in (200, 401), response.content  # a wrong password
    assert_locked(door, door.attempt("victim", "guess", ATTACKER))
    # Locked: even the right password from that address is refused now.
    assert_locked(door, door.attempt("victim", "victim-pass", ATTACKER))

    # The victim from their own address, another user from anywhere: not locked out.
    assert door.signed_in(door.attempt("victim", "victim-pass", VICTIM_HOME))
    assert door.signed_in(door.attempt("bystander", "bystander-pass", ELSEWHERE))
    assert door.signed_in(door.attempt("bystander", "bystander-pass", ATTACKER))


def test_failures_on_one_door_count_on_the_others() -> None:
    for door in ("portal", "admin", "token", "portal"):
        DOORS[door].attempt("victim", "guess", ATTACKER)
    assert_locked(DOORS["token"], DOORS["token"].attempt("victim", "guess", ATTACKER))


def test_a_success_resets_the_count() -> None:
    door = DOORS["token"]
    for _ in range(4):
        door.attempt("victim", "guess", ATTACKER)
    assert door.signed_in(door.attempt("victim", "victim-pass", ATTACKER))
    for _ in range(4):
        assert door.attempt("victim", "guess", ATTACKER).status_code == 401


def test_the_lockout_ends_after_the_cool_off(settings: Any) -> None:
    from axes.models import AccessAttempt

    door = DOORS["portal"]
    for _ in range(5):
        door.attempt("victim", "guess", ATTACKER)
    assert_locked(door, door.attempt("victim", "victim-pass", ATTACKER))
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(hours=1)
    )
    assert door.signed_in(door.attempt("victim", "victim-pass", ATTACKER))


def test_behind_a_trusted_proxy_the_forwarded_address_counts(settings: Any) -> None:
    settings.NINJA_NUM_PROXIES = 1
    door = DOORS["token"]
    proxy = "10.0.0.1"
    for _ in range(5):
        Client(REMOTE_ADDR=proxy).post(
            door.path, {"username": "victim", "password": "guess"},
            content_type="application/json", HTTP_X_FORWARDED_FOR=f"spoof, {ATTACKER}",
        )  # fmt: skip
    locked = Client(REMOTE_ADDR=proxy).post(
        door.path, {"username": "victim", "password": "victim-pass"},
        content_type="application/json", HTTP_X_FORWARDED_FOR=ATTACKER,
    )  # fmt: skip
    assert_locked(door, locked)
    # The same proxy relays the victim from home: a different client, not locked.
    home = Client(REMOTE_ADDR=proxy).post(
        door.path, {"username": "victim", "password": "victim-pass"},
        content_type="application/json", HTTP_X_FORWARDED_FOR=VICTIM_HOME,
    )  # fmt: skip
    assert home.status_code == 200, home.content
