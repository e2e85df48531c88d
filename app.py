"""Hugging Face Space entry point (``app_file: app.py``): the echomeasure review UI.

The app lives in :mod:`echomeasure.ui.app`; run from the repository root (as the Space does),
the ``echomeasure`` package beside this file is importable without being installed.
"""

from __future__ import annotations

from echomeasure.ui.app import build_app, space_main

__all__ = ["build_app", "space_main"]

if __name__ == "__main__":
    space_main()
