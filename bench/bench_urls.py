"""The project's URLs plus `GET /bench/constant`: a bare Ninja endpoint returning a constant.

It is the baseline for the server benches: the same gunicorn workers, middleware and Ninja
machinery, with no authentication, database or service work. `GET /bench/constant-jwt` adds
only the API's token authentication (the JWT, the user lookup and the password stamp every API
call checks) to show what authentication costs.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI

from project.urls import urlpatterns as project_urlpatterns
from uploads.auth import token_auth

bench_api = NinjaAPI(title="bench", version="bench", urls_namespace="bench", docs_url=None)


@bench_api.get("/constant", auth=None)
def constant(request: HttpRequest) -> dict[str, Any]:
    return {"ok": True}


@bench_api.get("/constant-jwt", auth=token_auth)
def constant_jwt(request: HttpRequest) -> dict[str, Any]:
    return {"ok": True}


urlpatterns = [path("bench/", bench_api.urls), *project_urlpatterns]
