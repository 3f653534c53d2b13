"""`python -m uploads.client …` runs the `direct-uploads` command line."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
