"""Demo entry point: ``python demo/app.py`` starts the review UI of an installed echomeasure.

The app itself is :mod:`echomeasure.ui.app` (``echomeasure demo`` starts the same UI with
options); this file only keeps the historical ``demo/app.py`` entry working.
"""

from __future__ import annotations

from echomeasure.ui.app import build_app, main, space_main

__all__ = ["build_app", "main", "space_main"]

if __name__ == "__main__":
    main()
