from __future__ import annotations

from tests.verifying_s3 import main

main()
