"""Who may do what: every API operation and every portal/staff URL × {anonymous, other user,
owner, staff}, against real objects (an upload in flight and a completed file).

The routes are read from the URL conf (Django's resolver, and each Ninja operation's methods
behind it), not listed by hand: a new endpoint or page without an entry in EXPECTED fails
`test_every_route_has_an_expectation` and its own matrix cases, so nobody adds a URL without
deciding who may call it. Django's admin is the one exception: its URLs come from the admin
site and follow its own staff rule, checked at the end.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.helpers import ApiClient, pin_local_disk
from uploads.models import FileRecord
from uploads.storage import get_storage_handler
from uploads.storage.local import LocalStorageHandler

PART = 1024
ROLES = ("anonymous", "other", "owner", "staff")
FILE_STATES = ("uploading", "completed")
ANY = "any"  # routes that take no file
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PASSWORDS = {"owner": "owner-pass", "other": "other-pass", "staff": "staff-pass"}


# --- What the URL conf serves ----------------------------------------------------------------


def _ninja_path_view(callback: Callable[..., Any]) -> Any:
    """The Ninja PathView behind a resolver callback, or None for any other view."""
    closure = inspect.getclosurevars(callback).nonlocals if inspect.isfunction(callback) else {}
    view = closure.get("self")
    return view if hasattr(view, "operations") else None


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern, list[str]]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            namespaces = [pattern.namespace] if pattern.namespace else []
            for route, leaf, inner in _walk(pattern.url_patterns, prefix + str(pattern.pattern)):
                yield route, leaf, namespaces + inner
        else:
            yield prefix + str(pattern.pattern), pattern, []


@functools.cache
def served_routes() -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """(method, route) of every API operation, and the route of every other view (no admin)."""
    operations: set[tuple[str, str]] = set()
    views: set[str] = set()
    for route, pattern, namespaces in _walk(get_resolver().url_patterns):
        if "admin" in namespaces:
            continue
        path_view = _ninja_path_view(pattern.callback)
        if path_view is not None:
            for operation in path_view.operations:
                operations.update((method, route) for method in operation.methods)
        else:
            views.add(route)
    return frozenset(operations), frozenset(views)


# --- The expectation table -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """How to call a route: who it targets, and what to send."""

    path: str  # may hold {file_id}, {token}, {download_token}
    data: Any = None
    per_file: bool = True
    api: bool = False
    query: str = ""


def roles(anonymous: int, other: int, owner: int, staff: int) -> dict[str, int]:
    return dict(zip(ROLES, (anonymous, other, owner, staff), strict=True))


@dataclass(frozen=True)
class Expect:
    call: Call
    # File state (or ANY) → role → status.
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)


def same_for_both(call: Call, statuses: dict[str, int]) -> Expect:
    return Expect(call, dict.fromkeys(FILE_STATES, statuses))


def no_file(call: Call, statuses: dict[str, int]) -> Expect:
    return Expect(
        Call(call.path, call.data, per_file=False, api=call.api, query=call.query), {ANY: statuses}
    )


def api(path: str, data: Any = None) -> Call:
    return Call(path, data, api=True)


def page(path: str, data: Any = None, query: str = "") -> Call:
    return Call(path, data, query=query)


# Resuming (listing parts, signing more) is the owner's alone, and only while the upload is open.
OPEN_ONLY = {"uploading": roles(401, 404, 200, 404), "completed": roles(401, 404, 409, 404)}

EXPECTED: dict[tuple[str, str], Expect] = {
    # --- API: tokens (no auth; the credentials are in the body) ---
    ("POST", "v1/auth/token/pair"): no_file(
        api("/v1/auth/token/pair", "CREDENTIALS"), roles(200, 200, 200, 200)
    ),
    ("POST", "v1/auth/token/refresh"): no_file(
        api("/v1/auth/token/refresh", "REFRESH"), roles(200, 200, 200, 200)
    ),
    # --- API: collections ---
    ("POST", "v1/files/uploads"): no_file(
        api("/v1/files/uploads", {"file_name": "new.bin", "file_size": 10}),
        roles(401, 201, 201, 201),
    ),
    ("GET", "v1/files"): no_file(api("/v1/files"), roles(401, 200, 200, 200)),
    # --- API: the upload lifecycle. Completing and resuming are the owner's alone; staff may
    # abort anyone's upload. Another user's file is "not found", never "forbidden". ---
    ("POST", "v1/files/uploads/<file_id>/complete"): Expect(
        api("/v1/files/uploads/{file_id}/complete", "PARTS"),
        {"uploading": roles(401, 404, 200, 404), "completed": roles(401, 404, 200, 404)},
    ),
    ("DELETE", "v1/files/uploads/<file_id>"): Expect(
        api("/v1/files/uploads/{file_id}"),
        {"uploading": roles(401, 404, 204, 204), "completed": roles(401, 404, 409, 409)},
    ),
    ("GET", "v1/files/uploads/<file_id>/parts"): Expect(
        api("/v1/files/uploads/{file_id}/parts"), OPEN_ONLY
    ),
    ("POST", "v1/files/uploads/<file_id>/presign"): Expect(
        api("/v1/files/uploads/{file_id}/presign", {"part_numbers": [1]}), OPEN_ONLY
    ),
    # --- API: files ---
    ("GET", "v1/files/<file_id>"): same_for_both(
        api("/v1/files/{file_id}"), roles(401, 404, 200, 200)
    ),
    ("PATCH", "v1/files/<file_id>"): same_for_both(
        api("/v1/files/{file_id}", {"name": "renamed"}), roles(401, 404, 200, 200)
    ),
    ("DELETE", "v1/files/<file_id>"): same_for_both(
        api("/v1/files/{file_id}"), roles(401, 404, 204, 204)
    ),
    ("POST", "v1/files/<file_id>/set-parent"): same_for_both(
        api(
            "/v1/files/{file_id}/set-parent",
            {"parent_content_type": None, "parent_object_id": None},
        ),
        roles(401, 404, 200, 200),
    ),
    ("GET", "v1/files/<file_id>/download"): Expect(
        api("/v1/files/{file_id}/download"),
        {"uploading": roles(401, 404, 409, 409), "completed": roles(401, 404, 302, 302)},
    ),
    # --- API: schema and docs are public; the bare prefix is nothing ---
    ("GET", "v1/openapi.json"): no_file(api("/v1/openapi.json"), roles(200, 200, 200, 200)),
    ("GET", "v1/docs"): no_file(api("/v1/docs"), roles(200, 200, 200, 200)),
    **{(method, "v1/"): no_file(api("/v1/"), roles(404, 404, 404, 404)) for method in METHODS},
    # --- Portal: sign-in pages ---
    ("GET", "accounts/login/"): no_file(page("/accounts/login/"), roles(200, 200, 200, 200)),
    ("POST", "accounts/login/"): no_file(
        page("/accounts/login/", {"username": "x", "password": "y"}), roles(200, 200, 200, 200)
    ),
    # Django's FormView handles PUT as POST.
    ("PUT", "accounts/login/"): no_file(
        page("/accounts/login/", {"username": "x", "password": "y"}), roles(200, 200, 200, 200)
    ),
    ("POST", "accounts/logout/"): no_file(page("/accounts/logout/", {}), roles(302, 302, 302, 302)),
    # --- Portal: pages of one's own files (staff see everyone's); anonymous → sign in ---
    ("GET", ""): no_file(page("/"), roles(302, 302, 302, 302)),
    ("GET", "upload/"): no_file(page("/upload/"), roles(302, 200, 200, 200)),
    ("GET", "files/"): no_file(page("/files/"), roles(302, 200, 200, 200)),
    ("POST", "upload/<str:file_id>/discard/"): Expect(
        page("/upload/{file_id}/discard/", {}),
        {"uploading": roles(302, 404, 302, 302), "completed": roles(302, 404, 409, 409)},
    ),
    ("GET", "files/<str:file_id>/"): same_for_both(
        page("/files/{file_id}/"), roles(302, 404, 200, 200)
    ),
    ("GET", "files/<str:file_id>/edit/"): same_for_both(
        page("/files/{file_id}/edit/"), roles(302, 404, 200, 200)
    ),
    ("POST", "files/<str:file_id>/edit/"): same_for_both(
        page("/files/{file_id}/edit/", {"name": "renamed", "description": "changed"}),
        roles(302, 404, 302, 302),
    ),
    ("POST", "files/<str:file_id>/parent/"): same_for_both(
        page("/files/{file_id}/parent/", {"parent_content_type": "", "parent_object_id": ""}),
        roles(302, 404, 302, 302),
    ),
    ("GET", "files/<str:file_id>/delete/"): same_for_both(
        page("/files/{file_id}/delete/"), roles(302, 404, 200, 200)
    ),
    ("POST", "files/<str:file_id>/delete/"): same_for_both(
        page("/files/{file_id}/delete/", {}), roles(302, 404, 302, 302)
    ),
    # --- Local-disk links: the signed token is the credential, whoever holds it ---
    ("PUT", "local/parts/<str:token>"): Expect(
        page("/local/parts/{token}", "PART_BODY"),
        {"uploading": roles(200, 200, 200, 200), "completed": roles(403, 403, 403, 403)},
    ),
    ("GET", "local/download/<str:token>"): Expect(
        page("/local/download/{download_token}"),
        {"uploading": roles(404, 404, 404, 404), "completed": roles(200, 200, 200, 200)},
    ),
    # --- Staff: anonymous → sign in, signed-in non-staff → 403 ---
    ("GET", "staff/"): no_file(page("/staff/"), roles(302, 403, 403, 200)),
    ("GET", "staff/progress/"): Expect(
        page("/staff/progress/", query="ids={file_id}"),
        {state: roles(302, 403, 403, 200) for state in FILE_STATES},
    ),
    ("POST", "staff/bulk/"): Expect(
        page("/staff/bulk/", {"action": "abort", "ids": ["{file_id}"], "confirm": "yes"}),
        {state: roles(302, 403, 403, 302) for state in FILE_STATES},
    ),
    ("POST", "staff/files/<str:file_id>/<str:action>/"): Expect(
        page("/staff/files/{file_id}/abort/", {}),
        {state: roles(302, 403, 403, 302) for state in FILE_STATES},
    ),
    ("POST", "staff/cleanup/"): no_file(page("/staff/cleanup/", {}), roles(302, 403, 403, 200)),
    ("GET", "staff/cleanup/<str:task_id>/"): no_file(
        page("/staff/cleanup/no-such-task/"), roles(302, 403, 403, 200)
    ),
}


# --- Cases, generated from the URL conf ------------------------------------------------------


def _cases() -> list[Any]:
    operations, views = served_routes()
    listed_views = {route for _, route in EXPECTED if route in views}
    served = (
        set(operations)
        | {(method, route) for (method, route) in EXPECTED if route in views}
        # A view nobody described: one failing case per role says so.
        | {("?", route) for route in views - listed_views}
    )
    cases = []
    for method, route in sorted(served):
        expect = EXPECTED.get((method, route))
        states = list(expect.statuses) if expect else [ANY]
        for state in states:
            for role in ROLES:
                cases.append(
                    pytest.param(
                        method, route, state, role, id=f"{method} /{route} [{state}] {role}"
                    )
                )
    return cases


def _unlisted_methods() -> list[Any]:
    """Per route, the methods the table does not list: each must answer 405."""
    operations, views = served_routes()
    routes = {route for _, route in operations} | views
    listed = set(EXPECTED) | operations
    cases = []
    for route in sorted(routes):
        methods = [method for method in METHODS if (method, route) not in listed]
        if methods:
            cases.append(pytest.param(route, methods, id=f"/{route} {','.join(methods)}"))
    return cases


# --- Fixtures: real users and real files ----------------------------------------------------


@dataclass
class World:
    users: dict[str, Any]
    files: dict[str, dict[str, Any]]
    refresh: str

    def client(self, role: str, *, api: bool) -> Any:
        user = self.users.get(role)
        if api:
            return ApiClient(user)
        client = Client()
        if user is not None:
            client.force_login(user)
        return client


@pytest.fixture
def world(db: Any, settings: Any) -> World:
    pin_local_disk(settings)
    make = get_user_model().objects.create_user
    users = {
        "owner": make("owner", password=PASSWORDS["owner"]),
        "other": make("other", password=PASSWORDS["other"]),
        "staff": make("staffer", password=PASSWORDS["staff"], is_staff=True),
    }
    owner = ApiClient(users["owner"])
    files = {}
    for state in FILE_STATES:
        content = bytes(range(256)) * 9  # 2,304 bytes: 3 parts of 1 KiB, the last short
        init = owner.post(
            "/v1/files/uploads",
            {"file_name": f"{state}.bin", "file_size": len(content), "part_size": PART},
        )
        assert init.status_code == 201, init.content
        body = init.json()
        parts = []
        for target in body["presigned_urls"]:
            n = target["part_number"]
            put = owner.put_part(target["url"], content[(n - 1) * PART : n * PART])
            assert put.status_code == 200, put.content
            parts.append({"part_number": n, "etag": put["ETag"]})
        if state == "completed":
            done = owner.post(f"/v1/files/uploads/{body['id']}/complete", {"parts": parts})
            assert done.status_code == 200, done.content
        handler = get_storage_handler()
        assert isinstance(handler, LocalStorageHandler)
        record = FileRecord.objects.get(pk=body["id"])
        download_url = handler.download_url(record.storage_key, file_name="x", expires_in=300)
        files[state] = {
            "id": body["id"],
            "parts": parts,
            "first_part": content[:PART],
            "token": body["presigned_urls"][0]["url"].rstrip("/").rpartition("/")[2],
            "download_token": download_url.rstrip("/").rpartition("/")[2],
        }
    pair = ApiClient().post(
        "/v1/auth/token/pair", {"username": "owner", "password": PASSWORDS["owner"]}
    )
    assert pair.status_code == 200, pair.content
    return World(users=users, files=files, refresh=pair.json()["refresh"])


def _request(world: World, method: str, expect: Expect, state: str, role: str) -> Any:
    call = expect.call
    target = world.files[state] if call.per_file else world.files["uploading"]
    values = {key: target[key] for key in ("token", "download_token")}
    values["file_id"] = target["id"]
    path = call.path.format(**values)
    if call.query:
        path += "?" + call.query.format(**values)
    data = call.data
    if data == "CREDENTIALS":
        data = {"username": "owner", "password": PASSWORDS["owner"]}
    elif data == "REFRESH":
        data = {"refresh": world.refresh}
    elif data == "PARTS":
        data = {"parts": target["parts"]}
    elif isinstance(data, dict):
        data = {
            key: [item.format(**values) if isinstance(item, str) else item for item in value]
            if isinstance(value, list)
            else value
            for key, value in data.items()
        }
    client = world.client(role, api=call.api)
    verb = method.lower()
    if call.api:
        return client.request(verb, path, data if verb in ("post", "patch") else None)
    if data == "PART_BODY":
        return client.put(path, data=target["first_part"], content_type="application/octet-stream")
    if data is None:
        return getattr(client, verb)(path)
    return getattr(client, verb)(path, data)


def _snapshot(file_id: str) -> dict[str, Any] | None:
    return FileRecord.objects.filter(pk=file_id).values().first()


# --- Tests -----------------------------------------------------------------------------------


def test_every_route_has_an_expectation() -> None:
    operations, views = served_routes()
    assert operations, "no Ninja operation found behind the URL conf"
    missing_ops = sorted(operations - set(EXPECTED))
    missing_views = sorted(v for v in views if not any(r == v for _, r in EXPECTED))
    assert not missing_ops and not missing_views, (
        "Routes without an access expectation (add them to EXPECTED with the status each role "
        f"gets): operations {missing_ops}, views {missing_views}"
    )


def test_no_expectation_for_a_route_that_is_gone() -> None:
    operations, views = served_routes()
    stale = sorted(
        (method, route)
        for method, route in EXPECTED
        if (method, route) not in operations and route not in views
    )
    assert not stale, f"EXPECTED lists routes the URL conf no longer serves: {stale}"


@pytest.mark.parametrize(("method", "route", "state", "role"), _cases())
def test_access(world: World, method: str, route: str, state: str, role: str) -> None:
    expect = EXPECTED.get((method, route))
    if expect is None:
        pytest.fail(f"{method} /{route} has no entry in EXPECTED: decide who may call it")
    wanted = expect.statuses[state][role]
    before = {key: _snapshot(f["id"]) for key, f in world.files.items()}

    response = _request(world, method, expect, state, role)

    assert response.status_code == wanted, (
        f"{role} {method} /{route} on the {state} file: {response.status_code}, "
        f"expected {wanted}: {response.content[:300]!r}"
    )
    if wanted in (401, 403, 404) and (method, route) in served_routes()[0]:
        body = response.json()
        assert set(body) <= {"detail", "code", "extra"} and body["detail"], body
        # A refusal never names the file it refused.
        assert world.files["completed"]["id"] not in body["detail"]
        assert world.files["uploading"]["id"] not in body["detail"]
    if wanted in (401, 403, 404) or (role == "anonymous" and wanted == 302):
        # Refused, or sent to sign in: nothing changed.
        after = {key: _snapshot(f["id"]) for key, f in world.files.items()}
        assert after == before
    if role == "anonymous" and wanted == 302:
        assert response["Location"].startswith("/accounts/login/"), response["Location"]


def test_anonymous_portal_redirects_go_to_sign_in(world: World) -> None:
    for path in ("/upload/", "/files/", "/staff/", f"/files/{world.files['completed']['id']}/"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next="), (path, response)


@pytest.mark.parametrize(("route", "methods"), _unlisted_methods())
def test_methods_not_in_the_table_are_refused(world: World, route: str, methods: list[str]) -> None:
    """A route answers only the methods EXPECTED lists (asked as staff, who may do the most)."""
    path = "/" + route
    for placeholder, value in {
        "<file_id>": world.files["uploading"]["id"],
        "<str:file_id>": world.files["uploading"]["id"],
        "<str:action>": "abort",
        "<str:token>": world.files["uploading"]["token"],
        "<str:task_id>": "no-such-task",
    }.items():
        path = path.replace(placeholder, value)
    before = {key: _snapshot(f["id"]) for key, f in world.files.items()}
    client = world.client("staff", api=route.startswith("v1/"))
    for method in methods:
        if isinstance(client, ApiClient):
            response = client.request(method.lower(), path, {} if method != "GET" else None)
        else:
            response = getattr(client, method.lower())(path)
        assert response.status_code == 405, (method, path, response.status_code)
    assert {key: _snapshot(f["id"]) for key, f in world.files.items()} == before


def test_admin_is_for_staff_only(world: World) -> None:
    assert world.client("anonymous", api=False).get("/admin/").status_code == 302
    for role in ("other", "owner"):
        response = world.client(role, api=False).get("/admin/")
        assert response.status_code == 302, role
        assert response["Location"].startswith("/admin/login/")
    assert world.client("staff", api=False).get("/admin/").status_code == 200


def test_completed_file_bytes_survive_every_refusal(world: World) -> None:
    """After other users and anonymous callers tried everything, the owner's file is intact."""
    for method, route in sorted(EXPECTED):
        expect = EXPECTED[(method, route)]
        if "completed" not in expect.statuses:
            continue
        for role in ("anonymous", "other"):
            if expect.statuses["completed"][role] in (401, 403, 404):
                _request(world, method, expect, "completed", role)
    record = FileRecord.objects.get(pk=world.files["completed"]["id"])
    assert record.upload_status == FileRecord.Status.COMPLETED
    assert default_storage.exists(record.storage_key)


def test_a_new_route_without_an_entry_is_caught(settings: Any) -> None:
    """The discovery above sees a new Ninja operation and a new page the table does not list."""
    import sys
    import types

    from django.http import HttpResponse
    from django.urls import clear_url_caches, path
    from ninja import NinjaAPI, Router

    import project.urls

    router = Router()

    @router.get("/things", url_name="things")
    def list_things(request: Any) -> list[int]:
        return []

    extra_api = NinjaAPI(urls_namespace="matrix-selftest")
    extra_api.add_router("/", router)
    module = types.ModuleType("matrix_selftest_urls")
    module.urlpatterns = [  # type: ignore[attr-defined]
        *project.urls.urlpatterns,
        path("v9/", extra_api.urls),
        path("new-page/", lambda request: HttpResponse("hi")),
    ]
    sys.modules[module.__name__] = module
    try:
        settings.ROOT_URLCONF = module.__name__
        clear_url_caches()
        operations, views = served_routes.__wrapped__()
    finally:
        del sys.modules[module.__name__]
        clear_url_caches()
    assert ("GET", "v9/things") in operations - set(EXPECTED)
    assert "new-page/" in views
    assert not any(route == "new-page/" for _, route in EXPECTED)
