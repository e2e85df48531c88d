"""Running a loaded model fast on a CPU: ONNX Runtime (fp32) when available, else torch.

ONNX Runtime runs the chosen DeepLabV3-MobileNetV3 faster than torch on the 2-core reference CPU
(``echomeasure bench`` and ``benchmarks/backbones.md`` give the figures).  The ONNX graph is exported once per
weight file (keyed by its sha256 and the input size) into a cache folder
(``$ECHOMEASURE_CACHE`` or ``$XDG_CACHE_HOME/echomeasure`` or ``~/.cache/echomeasure``) and
reused afterwards.  Any problem with the export or with ONNX Runtime falls back to torch with a
log message: the backend changes speed, never results (fp32 both ways; differences ~1e-5).

With a cached ONNX graph the ONNX Runtime path never imports torch (a large part of process
start-up): the weight file's sha256 is still checked against the manifest
and the graph is keyed by that sha256, so a changed weight file can never reuse a stale graph.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from echomeasure import atomic
from echomeasure.models.registry import LoadedModel, WeightsEntry, load_checkpoint

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "torch"]


def _default_threads() -> int:
    """``$ECHOMEASURE_THREADS``, else the cores this process may use (at most 8)."""
    env = os.environ.get("ECHOMEASURE_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


#: Default number of intra-op threads (2 on the 2-core reference machine).
DEFAULT_THREADS = _default_threads()


def cache_dir() -> Path:
    """Folder for derived artefacts (exported ONNX graphs)."""
    env = os.environ.get("ECHOMEASURE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "echomeasure"


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_path(entry: WeightsEntry) -> Path:
    """Where the ONNX graph of a weights entry is cached (keyed by sha256 and input size)."""
    h, w = entry.input_size
    return cache_dir() / "onnx" / f"{entry.name}-{entry.sha256[:16]}-{h}x{w}.onnx"


def export_onnx(loaded: LoadedModel, path: Path) -> Path:
    """Export a loaded model to ONNX (dynamic batch axis, opset 17) atomically at ``path``."""
    import torch

    h, w = loaded.entry.input_size
    model = loaded.model.eval()
    dummy = torch.zeros(1, 3, h, w)
    with atomic.atomic_path(path, make_parents=True) as tmp, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            tmp,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


class HeatmapRunner:
    """Callable that maps a model-input batch to heatmap logits.

    Build it with :meth:`for_entry` (inference: loads torch only when needed) or from an
    already loaded model (``HeatmapRunner(loaded)``).

    Parameters
    ----------
    loaded
        A model from :func:`echomeasure.models.registry.load_model`.
    backend
        ``"auto"`` (ONNX Runtime if installed and the export works, else torch), ``"onnx"``
        or ``"torch"``.
    num_threads
        Intra-op threads for either backend (default ``$ECHOMEASURE_THREADS`` or the usable
        cores, at most 8).

    Notes
    -----
    ``runner(x)`` takes float32 ``(B, 3, H, W)`` in [0, 1] (a numpy array from
    :meth:`~echomeasure.models.preprocess.CropTransform.apply_array` or a torch tensor) and
    returns float32 logits ``(B, C, H, W)`` as a numpy array.  ``runner.backend`` says which
    backend runs.
    """

    def __init__(
        self,
        loaded: LoadedModel | None = None,
        *,
        backend: Backend = "auto",
        num_threads: int = DEFAULT_THREADS,
        entry: WeightsEntry | None = None,
        weights_path: Path | None = None,
    ) -> None:
        if loaded is None and (entry is None or weights_path is None):
            raise TypeError("HeatmapRunner needs a LoadedModel, or an entry and its verified weights path")
        self.loaded = loaded
        self.entry: WeightsEntry = loaded.entry if loaded is not None else entry  # type: ignore[assignment]
        self.weights_path = loaded.path if loaded is not None else weights_path
        self.num_threads = int(num_threads)
        self._session: Any = None
        self._lock = threading.Lock()
        self.backend: Literal["onnx", "torch"] = "torch"
        if backend in ("auto", "onnx") and _onnx_available():
            try:
                self._session = self._make_session()
                self.backend = "onnx"
            except Exception as exc:  # export/runtime problems must never stop a measurement
                if backend == "onnx":
                    raise
                log.warning("ONNX Runtime unavailable for %s (%s); using torch", self.entry.name, exc)
        if self.backend == "torch":
            from echomeasure.models.builders import prepare_for_inference

            prepare_for_inference(self._torch_model().model)

    @classmethod
    def for_entry(
        cls, entry: WeightsEntry, weights_path: Path, *, backend: Backend = "auto", num_threads: int = DEFAULT_THREADS
    ) -> HeatmapRunner:
        """A runner for a registry entry whose file was verified (:func:`registry.verify_file`).

        With a cached ONNX graph and ONNX Runtime installed, torch is never imported.
        """
        return cls(None, backend=backend, num_threads=num_threads, entry=entry, weights_path=weights_path)

    def _torch_model(self) -> LoadedModel:
        if self.loaded is None:
            e = self.entry
            assert self.weights_path is not None, "a runner without a loaded model is built with its weights path"
            model = load_checkpoint(self.weights_path, e.arch, len(e.channels), normalisation=e.normalisation)
            self.loaded = LoadedModel(entry=e, model=model, path=Path(self.weights_path))
        return self.loaded

    def _make_session(self) -> Any:
        import onnxruntime as ort

        e = self.entry
        path = onnx_path(e)
        if not path.is_file():
            log.info("exporting %s %s to ONNX at %s (once)", e.name, e.version, path)
            export_onnx(self._torch_model(), path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.num_threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # idle intra-op threads sleep instead of spinning: on a busy 2-core workstation spinning
        # steals the core the working thread needs; a batch of frames runs long enough that the
        # wake-up latency does not matter
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Heatmap logits for a batch (see the class notes)."""
        if self._session is not None:
            arr = x.detach().cpu().numpy() if hasattr(x, "detach") else x
            arr = np.ascontiguousarray(arr, dtype=np.float32)  # no copy for NCHW float32
            with self._lock:
                (out,) = self._session.run(["logits"], {"image": arr})
            return out
        import torch

        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        prev = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                out = self._torch_model().model(t.contiguous(memory_format=torch.channels_last))
            return out.float().contiguous().numpy()
        finally:
            torch.set_num_threads(prev)
