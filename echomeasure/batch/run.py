"""The batch driver: walk the archive, fan files out over a Ray Data actor pool, write with one writer.

Flow::

    files (iter_input_files) -> source keys (HMAC of path and bytes) -> skip finished (--resume)
      -> ray.data.from_items(one block per file)
      -> map_batches(PreAnnotator, compute=ActorPoolStrategy(size=N))   # gate + models, per actor
      -> driver: verify seal -> store (one writer) or DIR/<key>.parquet

Where it runs: without an address, a local Ray instance sized to this machine is started (and
stopped at the end); ``address="auto"`` or ``"ray://host:port"`` joins an existing cluster,
which needs a server database (a SQLite file on one machine is refused before any work).

Failures: a file the gate or a reader refuses comes back as an error row and is reported; a file
whose worker dies is retried once on a restarted actor (``max_task_retries=1``), then reported;
the batch always runs to its end.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from echomeasure import config
from echomeasure.errors import EchomeasureError, InvalidInputError

log = logging.getLogger(__name__)

RAY_HINT = "Ray is not installed; install the batch extra: pip install 'echomeasure[ray]'"
WORKER_LOST = ("its worker died twice while processing it (killed or out of memory); "
               "run it alone with 'echomeasure ingest' to see why")
LOCAL_ADDRESSES = (None, "", "local")

Emit = Callable[[dict[str, Any]], None]


@dataclass
class BatchSummary:
    """What a batch run did, with its timings (seconds)."""

    files: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    workers: int = 0
    threads_per_worker: int = 0
    ray_start_s: float = 0.0
    first_result_s: float | None = None
    process_s: float = 0.0
    write_s: float = 0.0  # time the single writer spent verifying and storing results
    wall_s: float = 0.0
    worker_peak_rss_mb: dict[int, float] = field(default_factory=dict)
    worker_cpu_s: dict[int, float] = field(default_factory=dict)  # CPU seconds per worker process
    writer_cpu_s: float = 0.0  # CPU seconds of the driver while the pool ran

    @property
    def files_per_min(self) -> float:
        n = self.ok + self.failed
        return 60.0 * n / self.process_s if self.process_s > 0 else 0.0


def require_ray() -> Any:
    """Import Ray Data or raise the user error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EchomeasureError(RAY_HINT) from None
    return ray


def is_remote(address: str | None) -> bool:
    """True when ``address`` joins an existing cluster rather than starting a local one."""
    return address not in LOCAL_ADDRESSES


def check_destination(db: str | None, address: str | None, out_parquet: str | os.PathLike[str] | None) -> str | None:
    """Refuse a destination the workers' cluster cannot share; return the store URL (None for Parquet).

    A cluster joined by address needs a server database: a SQLite file lives on one machine and
    the review UI and other drivers could not reach it.
    """
    if out_parquet is not None:
        return None
    from echomeasure.store.engine import parse_url, sqlite_path

    url = config.db_url(db)
    if is_remote(address) and sqlite_path(parse_url(url)) is not None:
        raise InvalidInputError(
            f"a Ray cluster (--address {address}) needs a server database; SQLite is a single-machine file. "
            "Pass --db postgresql+psycopg://USER@HOST/DB (or ECHOMEASURE_DB), or --out parquet DIR"
        )
    return url


# --------------------------------------------------------------------------- resume ledger


def ledger_path(store_url: str) -> Path:
    """Where a store's finished source keys are kept: beside a SQLite file, else under ``db/``."""
    import hashlib

    from echomeasure.store.engine import parse_url, sqlite_path

    url = parse_url(store_url)
    path = sqlite_path(url)
    if path is not None:
        return path.with_name(path.name + ".batch-done")
    where = url.render_as_string(hide_password=True)  # the same ledger after a password change
    return config.DB_DIR / f"batch-done-{hashlib.sha256(where.encode()).hexdigest()[:16]}"


def read_ledger(path: Path, clip_ids: set[int]) -> set[str]:
    """Keys recorded as finished whose clip is still in the store."""
    if not path.exists():
        return set()
    done: set[str] = set()
    for line in path.read_text().splitlines():
        key, _, clip_id = line.partition("\t")
        if key and clip_id.isdigit() and int(clip_id) in clip_ids:
            done.add(key)
    return done


def append_ledger(path: Path, key: str, clip_id: int) -> None:
    """Record a finished file after its store transaction committed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as fh:
        fh.write(f"{key}\t{clip_id}\n")
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------- the writer


def store_opened(store: Any, opened: Any, *, actor: str = "system") -> Any:
    """Store a verified batch result as ``ingest`` stores a file: the clip, its frames, and its
    proposals with their contours and volumes (:func:`echomeasure.pipeline.store_clip`).

    A clip already stored keeps its proposals; otherwise the worker's proposals (or its warnings
    when it made none) are recorded.
    """
    from echomeasure.pipeline import store_clip

    return store_clip(store, opened.dclip, opened.file, lambda: (opened.proposals, opened.warnings), actor=actor)


def ingest_from_parquet(in_dir: str | os.PathLike[str], store: Any, *, secret: bytes,
                        emit: Emit, actor: str = "system") -> int:
    """Store every result of a Parquet batch folder; returns the number of files that failed."""
    from echomeasure.batch import parquet, sealed

    failed = 0
    for path, row in parquet.iter_rows(in_dir):
        name = path.name
        try:
            if row is None:
                raise InvalidInputError("not a readable batch result (damaged or not written by 'echomeasure batch')")
            opened = sealed.open_row(row, secret)
            result = store_opened(store, opened, actor=actor)
        except EchomeasureError as exc:
            failed += 1
            emit({"file": name, "status": "error", "error": str(exc)})
            continue
        emit(result.as_json())
    return failed


# --------------------------------------------------------------------------- progress


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()



class _Progress:
    """Files done and rate on stderr, at most every ``every_s`` seconds, and a final line."""

    def __init__(self, total: int, stream: TextIO, every_s: float = 2.0) -> None:
        self.total, self.stream, self.every_s = total, stream, every_s
        self.done = self.failed = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        now = time.perf_counter()
        if now - self._last >= self.every_s or self.done == self.total:
            self._last = now
            self.line()

    def line(self) -> None:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.stream.write(f"batch: {self.done}/{self.total} files done, {self.failed} failed, "
                          f"{60.0 * self.done / elapsed:.1f} files/min\n")
        self.stream.flush()


# --------------------------------------------------------------------------- Ray


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def plan_pool(cluster_cpus: float, workers: int | None, n_files: int, local: bool) -> tuple[int, int, float]:
    """``(actors, threads per actor, CPUs reserved per actor)`` for the pool.

    Local: one actor per core by default; fewer actors get the spare cores as inference threads.
    Cluster: one single-threaded actor per CPU the cluster reports, unless ``workers`` is given.
    Never more actors than files.
    """
    cpus = max(1.0, float(cluster_cpus))
    n = int(workers) if workers else max(1, int(cpus))
    if n < 1:
        raise InvalidInputError("--workers must be at least 1")
    n = max(1, min(n, n_files))
    if not local:
        return n, 1, 1.0
    threads = max(1, int(cpus) // n)
    return n, threads, min(float(threads), cpus / n)


def _start_ray(ray: Any, address: str | None) -> bool:
    """Start or join Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    try:
        if is_remote(address):
            # Workers read ECHOMEASURE_SECRET from their own environment: no runtime_env env_vars
            # (those are shown in the dashboard), nothing secret in the job.
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=_usable_cpus(), **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EchomeasureError(f"cannot start or join Ray at {address or 'a local instance'}: "
                               f"{' '.join(str(exc).split())[:200]}") from None
    return True


def _configure_data_context(ray: Any, n_files: int) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # A block whose worker died twice is dropped (and reported by the driver), not fatal.
    ctx.max_errored_blocks = max(1, n_files)
    ctx.execution_options.preserve_order = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def run_batch(
    paths: Sequence[str | os.PathLike[str]], *, db: str | None = None, address: str | None = None,
    workers: int | None = None, out_parquet: str | os.PathLike[str] | None = None, resume: bool = False,
    run_models: bool = True, only: Sequence[str] | None = None, user_cm_per_px: float | None = None,
    gpus_per_worker: float = 0.0, threads_per_worker: int | None = None, worker_class: type | None = None,
    emit: Emit | None = None, progress_stream: TextIO | None = None, actor: str = "system",
) -> BatchSummary:
    """Pre-annotate an archive: de-identify and propose in parallel, store with one writer.

    Parameters
    ----------
    paths
        Files or folders (walked recursively like ``ingest``).
    db
        Store URL (default ``ECHOMEASURE_DB`` or the local SQLite); ignored with ``out_parquet``.
    address
        None: a local Ray sized to this machine.  ``"auto"`` / ``"ray://host:port"``: a cluster.
    workers
        Actors in the pool (default: one per CPU).
    out_parquet
        Write ``<source_key>.parquet`` files here instead of storing (one per input file).
    resume
        Skip files an earlier run finished into the same store / folder (keyed by path and content,
        :func:`echomeasure.batch.sealed.source_key`).
    run_models, only, user_cm_per_px
        As for ``ingest``.
    gpus_per_worker
        GPUs Ray reserves for each actor (``num_gpus``) on clusters with GPU nodes.
    threads_per_worker
        Inference threads (and CPUs reserved) per actor instead of the plan of :func:`plan_pool`.
    worker_class
        The callable class run per actor (default :class:`~echomeasure.batch.worker.PreAnnotator`).
    emit
        Called with one JSON-able dict per file (default: print a JSON line on stdout).
    progress_stream
        Where progress lines go (default stderr).

    Returns
    -------
    BatchSummary
        Counts and timings.  Failed files are reported through ``emit``; nothing raises for them.

    Raises
    ------
    EchomeasureError
        Before any work: no files, Ray missing, SQLite with a cluster, unreachable store or
        cluster.  During the run: the workers hold another site secret (nothing is stored then).
    """
    from echomeasure.batch.worker import PreAnnotator

    t_wall = time.perf_counter()
    files = _input_files(paths, workers, gpus_per_worker)
    url = check_destination(db, address, out_parquet)
    ray = require_ray()
    job = _Job(
        secret=config.secret(), emit=emit or _print_json, stream=progress_stream or sys.stderr, actor=actor,
        address=address, workers=workers, gpus_per_worker=gpus_per_worker, threads_per_worker=threads_per_worker,
        worker_class=worker_class or PreAnnotator,
        worker_kwargs={"run_models": run_models, "only": list(only) if only else None, "user_cm_per_px": user_cm_per_px},
    )
    job.given = [label for _, label in files]
    summary = BatchSummary(files=len(files))
    _open_destination(job, url, out_parquet)
    try:
        with _local_quarantine(url, address):
            if not is_remote(address):
                _sweep_quarantine()  # originals a killed run left behind go, even if nothing is pending
            items = _pending_items([path for path, _ in files], job, resume, summary)
            if items:
                _run_pool(ray, items, summary, job)
    finally:
        if job.store is not None:
            job.store.close()
    summary.wall_s = time.perf_counter() - t_wall
    from echomeasure.ingest.hygiene import quote_path

    # with --out parquet DIR nothing is stored: the summary says where the results went
    done = "stored" if job.store is not None else f"written to {quote_path(out_parquet or '')}"
    job.stream.write(f"batch: {summary.ok} {done}, {summary.failed} failed, {summary.skipped} skipped of "
                     f"{summary.files} files in {summary.wall_s:.1f} s ({summary.files_per_min:.1f} files/min, "
                     f"{summary.workers} workers)\n")
    job.stream.flush()
    return summary


@dataclass
class _Job:
    """One batch run's settings and its destination (a store with its resume ledger, or a Parquet folder)."""

    secret: bytes
    emit: Emit
    stream: TextIO
    actor: str
    address: str | None
    workers: int | None
    gpus_per_worker: float
    threads_per_worker: int | None
    worker_class: type
    worker_kwargs: dict[str, Any]  # run_models, only, user_cm_per_px: the worker's constructor arguments
    store: Any = None
    ledger: Path | None = None
    out_dir: Path | None = None
    given: list[str] = field(default_factory=list)  # by input index: the file as an error line names it


def _input_files(paths: Sequence[str | os.PathLike[str]], workers: int | None,
                 gpus_per_worker: float) -> list[tuple[Path, str]]:
    """The files to process, each with how an error names it (:func:`echomeasure.pipeline.input_files_as_given`);
    refuses an empty archive and impossible pool settings."""
    from echomeasure.pipeline import input_files_as_given

    files = input_files_as_given(paths)
    if not files:
        raise InvalidInputError("no files to process in the given folder(s); give DICOM, video or image files")
    if workers is not None and workers < 1:
        raise InvalidInputError("--workers must be at least 1")
    if gpus_per_worker < 0:
        raise InvalidInputError("--gpus-per-worker cannot be negative")
    return files


def _open_destination(job: _Job, url: str | None, out_parquet: str | os.PathLike[str] | None) -> None:
    """Open the store and its ledger (``url``), or make the Parquet folder."""
    if url is not None:
        from echomeasure.store import open_store

        job.store = open_store(url)
        job.ledger = ledger_path(url)
        return
    out_dir = Path(out_parquet)  # type: ignore[arg-type]
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"{out_parquet}: is a file; give a folder for the Parquet results")
    out_dir.mkdir(parents=True, exist_ok=True)
    job.out_dir = out_dir


def _pending_items(files: list[Path], job: _Job, resume: bool, summary: BatchSummary) -> list[dict[str, Any]]:
    """The pool's input rows ``{"index", "path", "source_key"}``; with ``resume``, files an earlier
    run finished are reported as skipped instead."""
    from echomeasure.batch import parquet, sealed
    from echomeasure.ingest.clip import display_name

    done: set[str] = set()
    if resume and job.store is not None:
        done = read_ledger(job.ledger, {c.id for c in job.store.clips()})  # type: ignore[arg-type]
    elif resume:
        done = parquet.done_keys(job.out_dir)  # type: ignore[arg-type]
    items: list[dict[str, Any]] = []
    for index, path in enumerate(files):
        try:
            key = sealed.source_key(path, job.secret)
        except OSError:
            key = ""  # the worker's reader reports the problem in the usual words
        if key and key in done:
            summary.skipped += 1
            job.emit({"file": display_name(path), "status": "skipped", "reason": "finished in an earlier run"})
            continue
        items.append({"index": index, "path": str(path), "source_key": key})
    return items


def _run_pool(ray: Any, items: list[dict[str, Any]], summary: BatchSummary, job: _Job) -> None:
    """Run the actor pool over ``items`` and write each result as it arrives."""
    with without_ray_noise():
        t0 = time.perf_counter()
        started = _start_ray(ray, job.address)
        summary.ray_start_s = time.perf_counter() - t0
        try:
            _configure_data_context(ray, len(items))
            ds = _pool_dataset(ray, items, summary, job)
            _write_results(ds, items, summary, job)
        finally:
            if started:
                ray.shutdown()
                # workers stopped mid-file (Ctrl-C, an error) never ran their clean-up: the links
                # to originals they held go now, not at some later run
                _sweep_quarantine(wait_s=5.0)


@contextmanager
def _local_quarantine(url: str | None, address: str | None) -> Iterator[None]:
    """Local workers keep originals where ``ingest`` into this store would: ``quarantine/``
    beside the store's frame images (:func:`echomeasure.ingest.quarantine.quarantine_root`).

    The quarantine root follows ``ECHOMEASURE_DB``, not ``--db``: a batch into
    ``--db sqlite:///archive/store.sqlite`` put its links under the default store's folder.
    The workers of a local Ray inherit the driver's environment, so it is set there for the run
    (unless the user set ``ECHOMEASURE_QUARANTINE``); a cluster's workers use their own.
    """
    if is_remote(address) or url is None or os.environ.get("ECHOMEASURE_QUARANTINE"):
        yield
        return
    os.environ["ECHOMEASURE_QUARANTINE"] = str(config.images_dir(url).parent / "quarantine")
    try:
        yield
    finally:
        os.environ.pop("ECHOMEASURE_QUARANTINE", None)


def _sweep_quarantine(wait_s: float = 0.0) -> None:
    """Remove the quarantine folders of dead runs (:func:`echomeasure.ingest.quarantine.sweep`);
    with ``wait_s``, wait that long for stopping workers to let go of theirs."""
    from echomeasure.ingest import quarantine

    deadline = time.monotonic() + wait_s
    try:
        while True:
            quarantine.sweep()
            if not quarantine.leftovers() or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    except OSError as exc:  # an unwritable quarantine: the next run sweeps again
        log.warning("the quarantine could not be swept (%s)", type(exc).__name__)


#: Lines Ray's C++ core writes straight to the driver's stderr (file descriptor 2, past Python's
#: logging) that tell a batch user nothing.  Ray Data itself passes every actor of a map_batches
#: pool its DataContext and map function as object-store references (ray.put) and sets
#: max_restarts=-1 by default, and the core then warns that "the actor restart will fail" if those
#: objects are lost (Ray issues 53727, 57733): echomeasure's own constructor arguments are a few
#: small values, and Ray Data holds those references for as long as the pool runs.  Only lines
#: holding one of these texts are dropped; every other line (Ray's real errors included) passes.
RAY_NOISE: tuple[bytes, ...] = (b"has constructor arguments in the object store and max_restarts > 0",)


@contextmanager
def without_ray_noise(fd: int = 2, noise: tuple[bytes, ...] = RAY_NOISE) -> Iterator[None]:
    """While inside, lines written to file descriptor ``fd`` (by Python or by Ray's C++ core) pass
    through a filter that drops the lines holding a text of ``noise`` and forwards the rest, in
    order, to where ``fd`` pointed before.  On leaving, ``fd`` is restored and the rest forwarded."""
    try:
        saved = os.dup(fd)
        read_end, write_end = os.pipe()
    except OSError:  # no descriptor to filter (closed stderr): nothing to do
        yield
        return

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not any(n in line for n in noise))
                if out:
                    _write_all(saved, out)
            if pending and not any(n in pending for n in noise):
                _write_all(saved, pending)

    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    os.dup2(write_end, fd)
    os.close(write_end)
    thread = threading.Thread(target=pump, name="ray-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        _flush(sys.stderr)
        os.dup2(saved, fd)  # closes the pipe's last write end: the pump forwards the rest and stops
        thread.join(timeout=5.0)
        os.close(saved)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the terminal went away: nothing more to show
        pass


def _flush(stream: Any) -> None:
    with suppress(OSError, ValueError):  # a closed or broken stream: nothing to flush
        stream.flush()


def _pool_dataset(ray: Any, items: list[dict[str, Any]], summary: BatchSummary, job: _Job) -> Any:
    """The lazy Ray dataset of worker rows: ``items`` mapped by an actor pool sized by :func:`plan_pool`."""
    cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
    n, threads, cpus_per_actor = plan_pool(cluster_cpus, job.workers, len(items), local=not is_remote(job.address))
    if job.threads_per_worker:
        threads, cpus_per_actor = int(job.threads_per_worker), float(job.threads_per_worker)
    summary.workers, summary.threads_per_worker = n, threads
    remote_args: dict[str, Any] = {"num_cpus": cpus_per_actor, "max_restarts": -1, "max_task_retries": 1}
    if job.gpus_per_worker:
        remote_args["num_gpus"] = job.gpus_per_worker
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_restarts/max_task_retries as extra keyword
        # arguments but has no named parameter for them yet (hence ray<2.64 in the extra);
        # without them Ray Data retries a task whose worker dies forever.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            job.worker_class,
            fn_constructor_kwargs={**job.worker_kwargs, "threads": threads},
            batch_size=1,
            batch_format="numpy",
            # One file at a time per actor: a worker that dies takes only its own file's
            # retry with it, not those of files queued behind it.
            compute=ray.data.ActorPoolStrategy(size=n, max_tasks_in_flight_per_actor=1),
            **remote_args,
        )


def _write_results(ds: Any, items: list[dict[str, Any]], summary: BatchSummary, job: _Job) -> None:
    """Write each worker row as it arrives; report the files whose worker died twice."""
    from echomeasure.batch import sealed
    from echomeasure.ingest.clip import display_name

    names = {i["index"]: display_name(i["path"]) for i in items}
    my_check = sealed.secret_check(job.secret)
    progress = _Progress(len(items), job.stream)
    seen: set[int] = set()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    for row in ds.iter_rows():
        if summary.first_result_s is None:
            summary.first_result_s = time.perf_counter() - t_start
        index = int(row["index"])
        if index in seen:
            continue
        seen.add(index)
        pid = row.get("worker_pid")
        if pid is not None:
            for usage, column in ((summary.worker_peak_rss_mb, "worker_peak_rss_mb"),
                                  (summary.worker_cpu_s, "worker_cpu_s")):
                usage[int(pid)] = max(usage.get(int(pid), 0.0), float(row.get(column) or 0.0))
        if row.get("secret_check") != my_check:
            raise EchomeasureError(
                "the Ray workers hold another site secret than this machine (ECHOMEASURE_SECRET); their "
                "pseudonymous UIDs would not match: give every worker the same secret. Nothing more was stored"
            )
        t_write = time.perf_counter()
        ok = _write_one(row, job)
        summary.write_s += time.perf_counter() - t_write
        summary.ok += ok
        summary.failed += not ok
        progress.update(ok)
    for index in sorted(set(names) - seen):
        summary.failed += 1
        job.emit({"file": names[index], "status": "error", "error": WORKER_LOST})
        _error_line(job, index, EchomeasureError(WORKER_LOST))
        progress.update(False)
    summary.process_s = time.perf_counter() - t_start
    summary.writer_cpu_s = time.process_time() - cpu_start


def _write_one(row: dict[str, Any], job: _Job) -> bool:
    """Write one worker row through the single writer; report it; True when it was written."""
    from echomeasure.batch import parquet, sealed

    name = str(row["file"])
    try:
        if row["status"] != "ok":
            raise EchomeasureError(str(row.get("error") or "failed"))
        opened = sealed.open_row(row, job.secret)
        if job.store is not None:
            result = store_opened(job.store, opened, actor=job.actor)
            if row.get("source_key"):
                append_ledger(job.ledger, str(row["source_key"]), result.clip.id)  # type: ignore[arg-type]
            job.emit(result.as_json())
        else:
            written = parquet.write_row(job.out_dir, row)  # type: ignore[arg-type]
            c = opened.dclip
            job.emit({"file": name, "status": "ok", "parquet": written.name, "study_uid": c.study_uid,
                      "series_uid": c.series_uid, "instance_uid": c.instance_uid, "kind": c.kind,
                      "frames": c.n_frames, "calibration": c.clip.calibration_source,
                      "proposals": 0 if opened.proposals is None else len(opened.proposals.measurements),
                      "warnings": list(opened.warnings)})
    except EchomeasureError as exc:
        job.emit({"file": name, "status": "error", "error": str(exc)})
        _error_line(job, int(row["index"]), exc)
        return False
    return True


def _error_line(job: _Job, index: int, exc: EchomeasureError) -> None:
    """The ``error:`` line of a failed file on stderr: it names the file as the user gave it (the
    path typed, or its path inside the folder typed); the JSON line keeps the base name."""
    from echomeasure.ingest.hygiene import named_message

    job.stream.write(f"error: {named_message(job.given[index], exc)}\n")
