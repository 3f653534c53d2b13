"""django-q2 entry points: thin wrappers that call a service and return its counts."""

from __future__ import annotations

from .services import cleanup


def cleanup_expired_uploads() -> dict[str, int | bool]:
    return cleanup.cleanup_expired_uploads().as_dict()


def cleanup_failed_uploads(days_old: int = 7) -> dict[str, int | bool]:
    return cleanup.cleanup_failed_uploads(days_old).as_dict()


def purge_deleted_files() -> dict[str, int | bool]:
    return cleanup.purge_deleted_files().as_dict()


def reconcile_storage() -> dict[str, int | bool]:
    return cleanup.reconcile_storage().as_dict()


def cleanup_all() -> dict[str, dict[str, int | bool]]:
    """Every cleanup step, as the staff dashboard's "run cleanup now" starts it."""
    return {
        "expired": cleanup_expired_uploads(),
        "failed": cleanup_failed_uploads(),
        "deleted": purge_deleted_files(),
        "reconcile": reconcile_storage(),
    }
