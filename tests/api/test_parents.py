"""Parents: a file may point at any model instance (generic relation), under a parent policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType

from tests.factories import FileRecordFactory
from tests.helpers import UPLOADS, ApiClient, assert_error
from tests.testapp.models import Comment, Post
from uploads.models import FileRecord


def post_upload(api: ApiClient, **fields: Any) -> Any:
    return api.post(UPLOADS, {"file_name": "a.txt", "file_size": 10, **fields})


@pytest.fixture
def post(db: Any) -> Post:
    return Post.objects.create(title="first")


@pytest.fixture
def comment(post: Post) -> Comment:
    return Comment.objects.create(post=post, body="hi")


def post_type() -> ContentType:
    return ContentType.objects.get_for_model(Post)


# --- Initiate with a parent ----------------------------------------------------------------


@pytest.mark.parametrize("as_text", [False, True], ids=["int-id", "text-id"])
def test_initiate_with_a_parent_shows_it_in_the_detail(api, post, as_text):
    object_id = str(post.pk) if as_text else post.pk

    response = post_upload(api, parent_content_type="testapp.post", parent_object_id=object_id)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["parent_content_type"] == "testapp.post"
    assert body["parent_object_id"] == str(post.pk)
    detail = api.get(f"/v1/files/{body['id']}").json()
    assert detail["parent_content_type"] == "testapp.post"
    assert detail["parent_object_id"] == str(post.pk)
    saved = FileRecord.objects.get(pk=body["id"])
    assert saved.parent_content_type == post_type()
    assert saved.parent == post


@pytest.mark.parametrize("spelling", ["0{}", " {} ", "+{}"])
def test_initiate_stores_the_parents_own_id(api, post, spelling):
    # Any spelling the database accepts for the pk is stored as the pk itself, so the list
    # filter by the real id finds the file.
    response = post_upload(
        api, parent_content_type="testapp.post", parent_object_id=spelling.format(post.pk)
    )

    assert response.status_code == 201, response.content
    assert response.json()["parent_object_id"] == str(post.pk)
    assert FileRecord.objects.get(pk=response.json()["id"]).parent_object_id == str(post.pk)
    listed = api.get(
        f"/v1/files?status=all&parent_content_type=testapp.post&parent_object_id={post.pk}"
    )
    assert [f["id"] for f in listed.json()["results"]] == [response.json()["id"]]


def test_initiate_parent_type_is_case_insensitive(api, post):
    response = post_upload(api, parent_content_type=" TestApp.Post ", parent_object_id=post.pk)
    assert response.status_code == 201, response.content
    assert response.json()["parent_content_type"] == "testapp.post"


def test_initiate_with_a_comment_parent(api, comment):
    response = post_upload(api, parent_content_type="testapp.comment", parent_object_id=comment.pk)
    assert response.status_code == 201, response.content
    assert FileRecord.objects.get(pk=response.json()["id"]).parent == comment


@pytest.mark.parametrize(
    "parent_type", ["nope.model", "testapp", "testapp.", ".post", "testapp.nope", "testapp.post.x"]
)
def test_initiate_with_an_unknown_parent_type_is_400(api, post, parent_type):
    body = assert_error(
        post_upload(api, parent_content_type=parent_type, parent_object_id=post.pk), 400, "invalid"
    )
    assert body["extra"]["field"] == "parent_content_type"
    assert "parent type" in body["detail"]
    assert repr(parent_type) in body["detail"]
    assert "app_label.model" in body["detail"]
    assert not FileRecord.objects.exists()


def test_initiate_with_an_empty_parent_type_is_400(api, post):
    body = assert_error(
        post_upload(api, parent_content_type="", parent_object_id=post.pk), 400, "invalid"
    )
    assert body["extra"]["field"] == "parent_content_type"
    assert "parent_content_type" in body["detail"]
    assert not FileRecord.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"parent_content_type": "testapp.post"},
        {"parent_content_type": "testapp.post", "parent_object_id": None},
        {"parent_content_type": "testapp.post", "parent_object_id": ""},
    ],
    ids=["absent", "null", "empty"],
)
def test_initiate_without_a_parent_object_id_is_400(api, post, fields):
    body = assert_error(post_upload(api, **fields), 400, "invalid")
    assert "parent_object_id" in body["detail"]
    assert not FileRecord.objects.exists()


def test_initiate_with_only_a_parent_object_id_is_400(api, post):
    body = assert_error(post_upload(api, parent_object_id=post.pk), 400, "invalid")
    assert "parent_content_type" in body["detail"]
    assert not FileRecord.objects.exists()


@pytest.mark.parametrize("object_id", [999_999, "999999", "abc", "1; DROP TABLE", "x" * 100])
def test_initiate_with_a_missing_parent_object_is_400(api, post, object_id):
    body = assert_error(
        post_upload(api, parent_content_type="testapp.post", parent_object_id=object_id),
        400,
        "invalid",
    )
    assert body["extra"]["field"] == "parent_object_id"
    assert not FileRecord.objects.exists()


def test_initiate_with_nul_in_the_parent_is_400(api, post):
    # PostgreSQL fails any query with NUL in text: it must be refused before it gets there.
    body = assert_error(
        post_upload(api, parent_content_type="testapp.po\x00st", parent_object_id=post.pk),
        400,
        "invalid",
    )
    assert body["extra"]["field"] == "parent_content_type"
    body = assert_error(
        post_upload(api, parent_content_type="testapp.post", parent_object_id=f"{post.pk}\x00"),
        400,
        "invalid",
    )
    assert body["extra"]["field"] == "parent_object_id"
    assert not FileRecord.objects.exists()


def test_initiate_with_a_parent_object_id_of_the_wrong_type_is_422(api, post):
    response = post_upload(api, parent_content_type="testapp.post", parent_object_id=[post.pk])
    assert_error(response, 422, "invalid")


def test_parent_models_setting_refuses_other_models(api, settings, post, comment):
    settings.UPLOADS_PARENT_MODELS = ["testapp.post"]

    body = assert_error(
        post_upload(api, parent_content_type="testapp.comment", parent_object_id=comment.pk),
        400,
        "invalid",
    )
    assert "testapp.comment" in body["detail"]
    assert body["extra"]["field"] == "parent_content_type"
    assert not FileRecord.objects.exists()

    allowed = post_upload(api, parent_content_type="testapp.post", parent_object_id=post.pk)
    assert allowed.status_code == 201, allowed.content


def test_parent_models_setting_is_case_insensitive(api, settings, post):
    settings.UPLOADS_PARENT_MODELS = ["TestApp.Post"]
    response = post_upload(api, parent_content_type="testapp.post", parent_object_id=post.pk)
    assert response.status_code == 201, response.content


# --- List by parent ------------------------------------------------------------------------


def test_list_filters_by_parent(api, user, other_user, post):
    second = Post.objects.create(title="second")
    on_post = FileRecordFactory(
        created_by=user, parent_content_type=post_type(), parent_object_id=str(post.pk)
    )
    on_second = FileRecordFactory(
        created_by=user, parent_content_type=post_type(), parent_object_id=str(second.pk)
    )
    FileRecordFactory(created_by=user)
    # Someone else's file on the same parent stays invisible.
    FileRecordFactory(
        created_by=other_user, parent_content_type=post_type(), parent_object_id=str(post.pk)
    )

    response = api.get(f"/v1/files?parent_content_type=testapp.post&parent_object_id={post.pk}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    assert [f["id"] for f in body["results"]] == [str(on_post.pk)]
    assert body["results"][0]["parent_content_type"] == "testapp.post"
    assert body["results"][0]["parent_object_id"] == str(post.pk)

    by_type = api.get("/v1/files?parent_content_type=testapp.post").json()
    assert {f["id"] for f in by_type["results"]} == {str(on_post.pk), str(on_second.pk)}


def test_list_by_parent_keeps_the_default_status_filter(api, user, post):
    fields = {"parent_content_type": post_type(), "parent_object_id": str(post.pk)}
    done = FileRecordFactory(created_by=user, **fields)
    FileRecordFactory(created_by=user, upload_status=FileRecord.Status.UPLOADING, **fields)
    query = f"parent_content_type=testapp.post&parent_object_id={post.pk}"

    assert [f["id"] for f in api.get(f"/v1/files?{query}").json()["results"]] == [str(done.pk)]
    assert api.get(f"/v1/files?{query}&status=all").json()["count"] == 2


def test_list_by_an_other_parent_type_is_empty(api, user, post):
    FileRecordFactory(
        created_by=user, parent_content_type=post_type(), parent_object_id=str(post.pk)
    )
    body = api.get(f"/v1/files?parent_content_type=testapp.comment&parent_object_id={post.pk}")
    assert body.status_code == 200
    assert body.json()["count"] == 0


@pytest.mark.parametrize("parent_type", ["testapp", "", ".post"])
def test_list_with_a_malformed_parent_type_is_400(api, user, parent_type):
    body = assert_error(api.get(f"/v1/files?parent_content_type={parent_type}"), 400, "invalid")
    assert body["extra"]["field"] == "parent_content_type"


# --- set-parent ----------------------------------------------------------------------------


def test_set_parent_attaches_and_detaches(api, user, post):
    file = FileRecordFactory(created_by=user)

    attached = api.post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.post", "parent_object_id": post.pk},
    )

    assert attached.status_code == 200, attached.content
    assert attached.json()["parent_content_type"] == "testapp.post"
    assert attached.json()["parent_object_id"] == str(post.pk)
    file.refresh_from_db()
    assert file.parent == post

    detached = api.post(
        f"/v1/files/{file.pk}/set-parent", {"parent_content_type": None, "parent_object_id": None}
    )

    assert detached.status_code == 200, detached.content
    assert detached.json()["parent_content_type"] is None
    assert detached.json()["parent_object_id"] is None
    file.refresh_from_db()
    assert file.parent_content_type is None
    assert file.parent_object_id == ""
    assert file.parent is None


def test_set_parent_moves_to_another_parent(api, user, post, comment):
    file = FileRecordFactory(
        created_by=user, parent_content_type=post_type(), parent_object_id=str(post.pk)
    )
    response = api.post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.comment", "parent_object_id": str(comment.pk)},
    )
    assert response.status_code == 200, response.content
    file.refresh_from_db()
    assert file.parent == comment


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"parent_content_type": "nope.model", "parent_object_id": 1}, "parent_content_type"),
        ({"parent_content_type": "testapp", "parent_object_id": 1}, "parent_content_type"),
        ({"parent_content_type": "testapp.post", "parent_object_id": None}, "parent_content_type"),
        ({"parent_content_type": None, "parent_object_id": 1}, "parent_content_type"),
        ({"parent_content_type": "testapp.post", "parent_object_id": 999_999}, "parent_object_id"),
    ],
    ids=["unknown-type", "no-model", "no-id", "no-type", "missing-object"],
)
def test_set_parent_refuses_a_bad_parent_and_changes_nothing(api, user, post, payload, field):
    file = FileRecordFactory(
        created_by=user, parent_content_type=post_type(), parent_object_id=str(post.pk)
    )

    body = assert_error(api.post(f"/v1/files/{file.pk}/set-parent", payload), 400, "invalid")

    assert body["extra"]["field"] == field
    file.refresh_from_db()
    assert file.parent == post


def test_set_parent_refuses_a_model_outside_the_setting(api, user, settings, comment):
    settings.UPLOADS_PARENT_MODELS = ["testapp.post"]
    file = FileRecordFactory(created_by=user)

    response = api.post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.comment", "parent_object_id": comment.pk},
    )

    assert_error(response, 400, "invalid")
    file.refresh_from_db()
    assert file.parent_content_type is None


def test_set_parent_requires_both_fields_in_the_body(api, user, post):
    file = FileRecordFactory(created_by=user)
    response = api.post(f"/v1/files/{file.pk}/set-parent", {"parent_content_type": "testapp.post"})
    assert_error(response, 422, "invalid")
    file.refresh_from_db()
    assert file.parent_content_type is None


def test_set_parent_on_another_users_file_is_404(user, other_user, post, api_for):
    file = FileRecordFactory(created_by=user)
    response = api_for(other_user).post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.post", "parent_object_id": post.pk},
    )
    assert_error(response, 404, "not_found")
    file.refresh_from_db()
    assert file.parent_content_type is None


def test_staff_can_set_parent_on_anothers_file(user, staff_user, post, api_for):
    file = FileRecordFactory(created_by=user)
    response = api_for(staff_user).post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.post", "parent_object_id": post.pk},
    )
    assert response.status_code == 200, response.content
    file.refresh_from_db()
    assert file.parent == post


# --- The default model rule and the policy hook: never an existence oracle ----------------


def refused_rows(user: Any, other_user: Any) -> dict[str, str]:
    """An existing row of each model that is never a parent unless configured."""
    from django.contrib.sessions.backends.db import SessionStore
    from django_q.models import Schedule

    session = SessionStore()
    session.create()
    return {
        "auth.user": str(other_user.pk),
        "sessions.session": session.session_key,
        "contenttypes.contenttype": str(post_type().pk),
        "uploads.filerecord": str(FileRecordFactory(created_by=other_user).pk),
        "django_q.schedule": str(Schedule.objects.create(func="math.floor").pk),
    }


def test_without_the_setting_django_library_and_own_models_are_refused(
    api, user, other_user, settings
):
    settings.UPLOADS_PARENT_MODELS = []
    for label, existing in refused_rows(user, other_user).items():
        answers = [
            assert_error(
                post_upload(api, parent_content_type=label, parent_object_id=object_id),
                400,
                "invalid",
            )
            for object_id in (existing, "999999")
        ]
        # Refused by type, before any lookup: the same answer whether the row exists or not.
        assert answers[0] == answers[1], label
        assert answers[0]["detail"] == f"Files cannot be attached to {label!r}."
        assert answers[0]["extra"]["field"] == "parent_content_type"
    assert not FileRecord.objects.filter(created_by=user).exists()


def test_without_the_setting_the_projects_own_models_are_parents(api, settings, post):
    settings.UPLOADS_PARENT_MODELS = []
    response = post_upload(api, parent_content_type="testapp.post", parent_object_id=post.pk)
    assert response.status_code == 201, response.content


def test_the_setting_can_name_a_library_model(api, user, settings):
    settings.UPLOADS_PARENT_MODELS = ["auth.user"]
    response = post_upload(api, parent_content_type="auth.user", parent_object_id=user.pk)
    assert response.status_code == 201, response.content


@pytest.fixture
def private_post(db: Any, settings: Any) -> Post:
    settings.UPLOADS_PARENT_POLICY = "tests.testapp.policies.can_attach"
    return Post.objects.create(title="private notes")


def _without_id(body: dict[str, Any], object_id: object) -> dict[str, Any]:
    return {**body, "detail": body["detail"].replace(repr(str(object_id)), "<id>")}


def test_a_refused_and_a_missing_parent_get_the_same_answer(api, user, private_post):
    missing = private_post.pk + 1000
    refused = assert_error(
        post_upload(api, parent_content_type="testapp.post", parent_object_id=private_post.pk),
        400,
        "invalid",
    )
    absent = assert_error(
        post_upload(api, parent_content_type="testapp.post", parent_object_id=missing),
        400,
        "invalid",
    )
    assert _without_id(refused, private_post.pk) == _without_id(absent, missing)
    assert refused["extra"] == {"field": "parent_object_id"}

    file = FileRecordFactory(created_by=user)
    set_refused = api.post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.post", "parent_object_id": private_post.pk},
    )
    set_absent = api.post(
        f"/v1/files/{file.pk}/set-parent",
        {"parent_content_type": "testapp.post", "parent_object_id": missing},
    )
    assert (set_refused.status_code, set_absent.status_code) == (400, 400)
    assert _without_id(set_refused.json(), private_post.pk) == _without_id(
        set_absent.json(), missing
    )
    file.refresh_from_db()
    assert file.parent_content_type is None


def test_the_policy_decides_per_user(api_for, user, staff_user, private_post, post):
    assert (
        post_upload(
            api_for(staff_user),
            parent_content_type="testapp.post",
            parent_object_id=private_post.pk,
        ).status_code
        == 201
    )
    # The policy refuses only the private post; other posts stay open to everyone.
    assert (
        post_upload(
            api_for(user), parent_content_type="testapp.post", parent_object_id=post.pk
        ).status_code
        == 201
    )


def test_the_portal_uses_the_same_rule(client, user, private_post):
    client.force_login(user)
    file = FileRecordFactory(created_by=user)
    pages = [
        client.post(
            f"/files/{file.pk}/parent/",
            {"parent_content_type": "testapp.post", "parent_object_id": str(object_id)},
        )
        for object_id in (private_post.pk, private_post.pk + 1000)
    ]
    alerts = [
        re.findall(r'<p class="error" role="alert">(.*?)</p>', page.content.decode())
        for page in pages
    ]
    assert alerts[0] == [
        f"No testapp.post with id &#x27;{private_post.pk}&#x27; is available as a parent."
    ]
    assert alerts[1] == [
        f"No testapp.post with id &#x27;{private_post.pk + 1000}&#x27; is available as a parent."
    ]
    file.refresh_from_db()
    assert file.parent_content_type is None
