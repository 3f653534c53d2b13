"""README's Python client runs unchanged against a live server, on local disk and on S3 (moto,
and the verifying store that checks every signature).

The code is read from README.md at test time, so the published example cannot drift from what
the server accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from uploads.models import FileRecord

from .support import MIB, payload

README = Path(settings.BASE_DIR) / "README.md"
FUNCTION = "upload_file_multipart"


def readme_example() -> Any:
    """Exec README's one ```python block that defines the client; return the function."""
    blocks = re.findall(r"^```python[^\n]*\n(.*?)^```", README.read_text(), re.M | re.S)
    defining = [b for b in blocks if re.search(rf"^def {FUNCTION}\(", b, re.M)]
    assert len(defining) == 1, f"README.md needs exactly one python block defining {FUNCTION}"
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(defining[0], str(README), "exec"), namespace)  # noqa: S102
    return namespace[FUNCTION]


@pytest.mark.usefixtures("transactional_db")
def test_readme_client_uploads_a_12_mib_file(
    backend: str, live_server: Any, user: Any, tmp_path: Path
) -> None:
    upload_file_multipart = readme_example()
    content = payload(12 * MIB, seed=12)
    source = tmp_path / "big.bin"
    source.write_bytes(content)
    api_base_url = f"{live_server.url}/v1"
    tokens = requests.post(
        f"{api_base_url}/auth/token/pair",
        json={"username": user.username, "password": "alice-pass"},
        timeout=30,
    )
    assert tokens.status_code == 200, tokens.text

    result = upload_file_multipart(
        str(source), api_base_url, tokens.json()["access"], part_size=5 * MIB
    )

    assert result["upload_status"] == FileRecord.Status.COMPLETED
    assert result["file_name"] == "big.bin"
    assert result["file_size"] == len(content)
    record = FileRecord.objects.get(pk=result["id"])
    assert (record.total_parts, record.part_size) == (3, 5 * MIB)
    fetched = requests.get(
        result["url"], headers={"Authorization": f"Bearer {tokens.json()['access']}"}, timeout=60
    )
    assert fetched.history and fetched.history[0].status_code == 302
    assert fetched.status_code == 200
    assert fetched.content == content
