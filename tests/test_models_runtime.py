"""Inference backends: ONNX Runtime and torch give the same heatmaps; fallback to torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echomeasure.models import runtime
from echomeasure.models.registry import load_model


def test_onnx_and_torch_backends_agree(use_random_weights):
    pytest.importorskip("onnxruntime")
    loaded = load_model("plax-linear", weights_dir=use_random_weights)
    x = torch.rand(3, 3, *loaded.entry.input_size)
    onnx = runtime.HeatmapRunner(loaded, backend="onnx", num_threads=1)
    assert onnx.backend == "onnx"
    exported = list((use_random_weights.parent / "cache" / "onnx").glob("plax-linear-*.onnx"))
    assert len(exported) == 1 and loaded.sha256[:16] in exported[0].name
    loaded = load_model("plax-linear", weights_dir=use_random_weights)
    torch_runner = runtime.HeatmapRunner(loaded, backend="torch", num_threads=1)
    a, b = onnx(x), torch_runner(x)
    assert a.shape == (3, 8, *loaded.entry.input_size)
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    assert np.allclose(a, b, atol=1e-3, rtol=1e-3)


def test_without_onnxruntime_auto_falls_back_to_torch(use_random_weights, monkeypatch):
    monkeypatch.setattr(runtime, "_onnx_available", lambda: False)
    loaded = load_model("plax-linear", weights_dir=use_random_weights)
    runner = runtime.HeatmapRunner(loaded, backend="auto", num_threads=1)
    assert runner.backend == "torch"
    out = runner(torch.rand(1, 3, *loaded.entry.input_size))
    assert out.shape[1] == 8 and np.isfinite(out).all()


def test_broken_export_falls_back_to_torch_in_auto_mode(use_random_weights, monkeypatch):
    pytest.importorskip("onnxruntime")

    def broken(loaded, path):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(runtime, "export_onnx", broken)
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(use_random_weights.parent / "empty-cache"))
    loaded = load_model("plax-linear", weights_dir=use_random_weights)
    assert runtime.HeatmapRunner(loaded, backend="auto", num_threads=1).backend == "torch"
    with pytest.raises(RuntimeError, match="exploded"):
        runtime.HeatmapRunner(loaded, backend="onnx", num_threads=1)


def test_cached_onnx_graph_runs_without_importing_torch(use_random_weights, tmp_path):
    """The ONNX path of a fresh process never imports torch (start-up cost)."""
    pytest.importorskip("onnxruntime")
    import os
    import subprocess
    import sys

    from echomeasure.models.registry import get_entry, verify_file

    # make sure the graph is cached
    entry = get_entry("plax-linear", None, use_random_weights)
    runtime.HeatmapRunner.for_entry(entry, verify_file(entry, use_random_weights), backend="onnx", num_threads=1)
    code = (
        "import sys, numpy as np\n"
        "from echomeasure.models.registry import get_entry, verify_file\n"
        "from echomeasure.models.runtime import HeatmapRunner\n"
        "from echomeasure.models.decode import decode_keypoints\n"
        "e = get_entry('plax-linear', None, sys.argv[1])\n"
        "r = HeatmapRunner.for_entry(e, verify_file(e, sys.argv[1]), backend='onnx', num_threads=1)\n"
        "out = r(np.zeros((1, 3) + tuple(e.input_size), np.float32))\n"
        "decode_keypoints(out)\n"
        "print(r.backend, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "ECHOMEASURE_CACHE": str(use_random_weights.parent / "cache")}
    done = subprocess.run([sys.executable, "-c", code, str(use_random_weights)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onnx", "False"]
