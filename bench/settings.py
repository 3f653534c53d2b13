"""Bench-only settings: the project's own, with a URLconf that adds a bare Ninja endpoint.

`DJANGO_SETTINGS_MODULE=bench.settings` is set only by the benches that compare against that
endpoint (listing, throughput); nothing under project/ knows it exists.
"""

from __future__ import annotations

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
