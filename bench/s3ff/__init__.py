"""The peer of the `peer` bench: a minimal Django site serving django-s3-file-field's views.

It runs in its own virtualenv (.venv-peer, from requirements.lock beside this file) under
gunicorn, against the same moto server and database as ours. Nothing in the project imports it.
"""
