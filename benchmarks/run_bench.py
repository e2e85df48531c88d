"""Run the echomeasure benchmark and keep the results next to this script.

    .venv/bin/python benchmarks/run_bench.py                 # speed -> benchmarks/results.json
    .venv/bin/python benchmarks/run_bench.py --memory --profile --backbones
    .venv/bin/python benchmarks/run_bench.py --accuracy --cases 50

Everything is in :mod:`echomeasure.bench`; this is only a shell with a default output path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from echomeasure.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "-o" not in args and "--output" not in args:
        args += ["-o", str(Path(__file__).resolve().parent / "results.json")]
    sys.exit(main(["bench", *args]))
