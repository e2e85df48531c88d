"""Demo entry point: ``python demo/app.py [OPTIONS]`` starts the review UI of an installed echomeasure.

The app itself is :mod:`echomeasure.ui.app`; this file only keeps the historical ``demo/app.py``
entry working.  Its command line is ``echomeasure demo``'s (``--help``, ``--host``, ``--port``,
``--db``, ``--auth``, ...), with the same checks: before, every argument was ignored and
``python demo/app.py --help`` started a server.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["run"]  # build_app, main and space_main still resolve (module __getattr__)


def __getattr__(name: str) -> Any:
    """``build_app``, ``main`` and ``space_main`` of :mod:`echomeasure.ui.app`, imported when first
    used (Gradio takes seconds to import; ``--help`` needs none of it)."""
    if name in ("build_app", "main", "space_main"):
        from echomeasure.ui import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(argv: list[str] | None = None) -> int:
    """``echomeasure demo`` with ``argv`` (default: this process's arguments)."""
    from echomeasure.cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
