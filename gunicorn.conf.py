"""gunicorn's settings for the production shape: sync workers behind nginx (deploy/nginx/).

gunicorn reads this file from the directory it starts in: `gunicorn` alone serves
project.wsgi. nginx reads every request body whole before passing it on, so a worker only ever
sees complete requests: clients that stall their headers or bodies hold an nginx connection,
never a worker. Without nginx in front, sync workers are held by such clients (README,
Production).
"""

from __future__ import annotations

import multiprocessing
import os

wsgi_app = "project.wsgi:application"
# nginx proxies to this address; keep it on loopback (or a private interface).
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Each worker keeps one database connection open (DATABASE_CONN_MAX_AGE): workers on every web
# machine, plus the task workers, must fit in PostgreSQL's max_connections.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * multiprocessing.cpu_count() + 1)
worker_class = "sync"
# Longest a request may run before its worker is replaced: above the longest store call, a
# completion waiting AWS_S3_COMPLETE_READ_TIMEOUT (120 s), plus the calls around it.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 150)
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
