"""Hugging Face Space entry point (``app_file: app.py``): the echomeasure review UI.

Works from any working directory: the repository root is put on ``sys.path`` so that both the
``echomeasure`` package and the ``demo`` app import without being installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.app import build_app, space_main  # noqa: E402

__all__ = ["build_app", "space_main"]

if __name__ == "__main__":
    space_main()
