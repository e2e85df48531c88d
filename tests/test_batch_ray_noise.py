"""Ray's own "constructor arguments in the object store" line is kept off the batch's stderr.

Ray Data passes every pool actor its DataContext and map function through the object store and
sets max_restarts=-1 itself, so Ray's C++ core printed an ``E ... core_worker.cc`` line on every
batch run (Ray issues 53727, 57733) that a user reads as an error.  The batch filters exactly
that line from file descriptor 2; every other line (Ray's real errors, our progress) passes in
order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from echomeasure import config

NOISE = ("[2026-12-07 16:51:19,175 E 12434 12434] core_worker.cc:2465: Actor with class name: "
         "'MapWorker(MapBatches(PreAnnotator))' and ID: '33' has constructor arguments in the object store and "
         "max_restarts > 0. If the arguments in the object store go out of scope or are lost, the actor restart "
         "will fail. See https://github.com/ray-project/ray/issues/53727 for more details.")


def test_only_the_noise_line_is_dropped_and_the_rest_keeps_its_order():
    script = textwrap.dedent(f"""
        import os, sys
        from echomeasure.batch.run import without_ray_noise
        print("before", file=sys.stderr, flush=True)
        with without_ray_noise():
            print("batch: 1/2 files done", file=sys.stderr)
            os.write(2, {NOISE!r}.encode() + b"\\n")  # as Ray's C++ core writes it, past Python
            os.write(2, b"[E 1 1] core_worker.cc:99: a real Ray error\\n")
            print("batch: 2/2 files done", file=sys.stderr)
            os.write(2, b"no newline at the end")
        print("", file=sys.stderr)
        print("after", file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["before", "batch: 1/2 files done", "[E 1 1] core_worker.cc:99: a real Ray error",
                                        "batch: 2/2 files done", "no newline at the end", "after"]


@pytest.mark.slow
def test_a_batch_run_has_no_ray_noise_on_stderr(tmp_path):
    pytest.importorskip("ray")
    archive = tmp_path / "archive"
    archive.mkdir()
    for f in sorted(config.EXAMPLES_DIR.glob("case_000[01].dcm")):
        shutil.copy(f, archive / f.name)
    exe = Path(sys.executable).parent / "echomeasure"
    proc = subprocess.run([str(exe), "batch", str(archive), "--db", f"sqlite:///{tmp_path / 's.sqlite'}",
                           "--workers", "1", "--no-propose"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ECHOMEASURE_SECRET": "test-secret"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "object store" not in proc.stderr and "core_worker" not in proc.stderr
    assert "batch: 2 stored, 0 failed, 0 skipped of 2 files" in proc.stderr
