"""Multi-reader agreement: how readers agree with each other and with the AI, per measurement.

A *read* is a reader's latest value of one measurement on one clip: the reviewer's latest
review of it that carries a physical value (accepted, corrected or added; rejected reads and
values in pixels do not count).  The AI's value is the clip's latest proposal of the measurement.

Per measurement the report gives:

* ``n`` - clips read by every reader of the measurement (the ICC needs a complete table);
* ICC(2,1) (two-way random effects, absolute agreement, single rater; McGraw & Wong ICC(A,1))
  and ICC(3,1) (two-way mixed effects, consistency, single rater; ICC(C,1)) with their 95 %
  confidence intervals, from ``pingouin.intraclass_corr``;
* the inter-reader coefficient of variation: the root mean square over clips of (SD across
  readers / mean), in %;
* Bland-Altman for each reader pair and for the AI against each reader: mean difference (bias,
  first minus second) and 95 % limits of agreement (bias +- 1.96 SD of the differences) on the
  clips both read;
* optionally one PNG per measurement with a Bland-Altman panel per pair (matplotlib, Agg).

A measurement with fewer than 2 readers gets a row that says so and no statistics.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from echomeasure import catalog
from echomeasure.errors import EchomeasureError, InvalidInputError
from echomeasure.store import Store
from echomeasure.store.records import ReviewRecord

AI_READER = "AI"
MIN_CLIPS_FOR_ICC = 3
LOA_Z = 1.96


@dataclass(frozen=True)
class Read:
    """One reader's value of one measurement on one clip (catalogue unit)."""

    clip_id: int
    measurement: str
    reader: str
    value: float
    mode: str | None = None


@dataclass(frozen=True)
class BlandAltman:
    """Agreement of ``first`` with ``second``: differences are first minus second."""

    first: str
    second: str
    n: int
    mean_difference: float | None
    sd_difference: float | None
    loa_low: float | None
    loa_high: float | None


@dataclass(frozen=True)
class ICC:
    value: float
    ci95_low: float
    ci95_high: float


@dataclass
class MeasurementAgreement:
    """The report row of one measurement."""

    measurement: str
    unit: str
    readers: list[str]
    n: int
    icc_2_1: ICC | None = None
    icc_3_1: ICC | None = None
    cv_percent: float | None = None
    reader_pairs: list[BlandAltman] = field(default_factory=list)
    ai_vs_reader: list[BlandAltman] = field(default_factory=list)
    note: str | None = None


# --------------------------------------------------------------------------- data


def reads_from_store(store: Store, *, modes: Sequence[str] | None = None) -> tuple[list[Read], list[Read]]:
    """The readers' reads and the AI's values in the store: ``(reads, ai_reads)``.

    ``modes`` keeps only reads made in those reading modes (needs the reader tables; reviews
    not made as an assigned reader then do not count).
    """
    mode_of: dict[int, str] = {}
    try:
        from echomeasure.store.readers import read_modes

        mode_of = read_modes(store)
    except ImportError:  # pragma: no cover - the readers module ships with this one
        pass
    latest: dict[tuple[int, str, str], ReviewRecord] = {}
    for r in store.reviews():
        latest[(r.clip_id, r.measurement, r.reviewer)] = r  # oldest first: the last one wins
    reads = []
    for (clip_id, name, reviewer), r in sorted(latest.items()):
        spec = catalog.CATALOG.get(name)
        if spec is None or r.value is None or r.unit != spec.unit or not math.isfinite(r.value):
            continue
        mode = mode_of.get(r.id)
        if modes is not None and mode not in modes:
            continue
        reads.append(Read(clip_id, name, reviewer, float(r.value), mode))
    ai: dict[tuple[int, str], Read] = {}
    for clip in store.clips():
        for p in store.proposals(clip.id):
            spec = catalog.CATALOG.get(p.measurement)
            if spec is not None and p.value is not None and p.unit == spec.unit:
                ai[(clip.id, p.measurement)] = Read(clip.id, p.measurement, AI_READER, float(p.value))
    return reads, list(ai.values())


# --------------------------------------------------------------------------- statistics


def bland_altman(first: str, second: str, a: Sequence[float], b: Sequence[float]) -> BlandAltman:
    """Bias and 95 % limits of agreement of paired values ``a`` - ``b``."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(diff.size)
    if n < 2:
        return BlandAltman(first, second, n, float(diff.mean()) if n else None, None, None, None)
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    return BlandAltman(first, second, n, mean, sd, mean - LOA_Z * sd, mean + LOA_Z * sd)


def icc_table(table: np.ndarray) -> tuple[ICC, ICC]:
    """ICC(2,1) and ICC(3,1) with 95 % CIs of a complete (clips x readers) table (pingouin)."""
    import pandas as pd
    import pingouin as pg

    n, k = table.shape
    long = pd.DataFrame(
        {"clip": np.repeat(np.arange(n), k), "reader": np.tile(np.arange(k), n), "value": table.ravel()}
    )
    with warnings.catch_warnings():  # pingouin's pandas deprecation notices are not the user's business
        warnings.simplefilter("ignore")
        res = pg.intraclass_corr(data=long, targets="clip", raters="reader", ratings="value").set_index("Type")

    def pick(*labels: str) -> ICC:
        for label in labels:
            if label in res.index:
                row = res.loc[label]
                low, high = (float(x) for x in row["CI95%" if "CI95%" in res.columns else "CI95"])
                return ICC(float(row["ICC"]), low, high)
        raise KeyError(f"pingouin gave none of {labels}: {list(res.index)}")

    # pingouin < 0.6 names them ICC2/ICC3; later versions ICC(A,1)/ICC(C,1) (McGraw & Wong).
    return pick("ICC(A,1)", "ICC2"), pick("ICC(C,1)", "ICC3")


def cv_percent(table: np.ndarray) -> float | None:
    """Root-mean-square within-clip coefficient of variation across readers, in %."""
    means = table.mean(axis=1)
    if table.shape[1] < 2 or np.any(means == 0):
        return None
    cv = table.std(axis=1, ddof=1) / np.abs(means)
    return float(np.sqrt(np.mean(cv**2)) * 100.0)


def agreement(reads: Iterable[Read], ai_reads: Iterable[Read] = ()) -> list[MeasurementAgreement]:
    """The agreement report rows, in catalogue order, for every measurement anyone read."""
    by_measurement: dict[str, dict[str, dict[int, float]]] = {}
    for r in reads:
        by_measurement.setdefault(r.measurement, {}).setdefault(r.reader, {})[r.clip_id] = r.value
    ai: dict[str, dict[int, float]] = {}
    for r in ai_reads:
        ai.setdefault(r.measurement, {})[r.clip_id] = r.value
    rows = []
    for name in [n for n in catalog.CATALOG if n in by_measurement]:
        per_reader = by_measurement[name]
        readers = sorted(per_reader)
        unit = catalog.get(name).unit
        clips_all = sorted(set.intersection(*(set(v) for v in per_reader.values())))
        row = MeasurementAgreement(name, unit, readers, len(clips_all))
        if len(readers) < 2:
            row.note = f"fewer than 2 readers ({len(readers)}: {', '.join(readers)}); no statistics"
            rows.append(row)
            continue
        if len(clips_all) >= MIN_CLIPS_FOR_ICC:
            table = np.array([[per_reader[r][c] for r in readers] for c in clips_all])
            row.icc_2_1, row.icc_3_1 = icc_table(table)
            row.cv_percent = cv_percent(table)
        else:
            row.note = f"ICC needs {MIN_CLIPS_FOR_ICC} clips read by every reader; {len(clips_all)} are"
        for a, b in itertools.combinations(readers, 2):
            both = sorted(set(per_reader[a]) & set(per_reader[b]))
            row.reader_pairs.append(
                bland_altman(a, b, [per_reader[a][c] for c in both], [per_reader[b][c] for c in both])
            )
        model = ai.get(name, {})
        for reader in readers:
            both = sorted(set(model) & set(per_reader[reader]))
            if both:
                row.ai_vs_reader.append(
                    bland_altman(AI_READER, reader, [model[c] for c in both], [per_reader[reader][c] for c in both])
                )
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- output


def report_json(rows: Sequence[MeasurementAgreement]) -> dict:
    """The report as JSON-ready data."""
    return {"schema": "echomeasure.agreement/1", "measurements": [asdict(r) for r in rows]}


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _icc(icc: ICC | None) -> str:
    return "-" if icc is None else f"{icc.value:.3f} [{icc.ci95_low:.2f}, {icc.ci95_high:.2f}]"


def _cell(text: object) -> str:
    """Text for a Markdown table cell shown in the UI: reader names are typed freely, so HTML is
    escaped (a name ``<img src=x onerror=...>`` was rendered as a live tag) and Markdown's
    table, code, emphasis and link characters are taken literally.  Only those: a cell never
    starts a line (no heading), ``<`` and ``>`` are entities already, and a parenthesis is
    escaped only after a ``]`` (where it would open a link target), so a note reads
    ``(1: alice)``, not ``\\(1: alice\\)``."""
    plain = " ".join(html.escape(str(text), quote=True).split())
    return re.sub(r"([\\|`*_\[\]~])", r"\\\1", plain).replace("\\](", "\\]\\(")


def report_markdown(rows: Sequence[MeasurementAgreement]) -> str:
    """The report as Markdown: one table of ICC/CV per measurement, one of Bland-Altman pairs."""
    if not rows:
        return "No reads with a physical value in the store: nothing to compare.\n"
    out = [
        "| measurement | unit | readers | n | ICC(2,1) [95% CI] | ICC(3,1) [95% CI] | CV % | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.measurement} | {r.unit} | {len(r.readers)} | {r.n} | {_icc(r.icc_2_1)} | {_icc(r.icc_3_1)} "
            f"| {_f(r.cv_percent, 1)} | {_cell(r.note or '')} |"
        )
    pairs = [(r, p) for r in rows for p in [*r.reader_pairs, *r.ai_vs_reader]]
    if pairs:
        out += [
            "",
            "Bland-Altman (difference = first - second):",
            "",
            "| measurement | first | second | n | mean difference | 95% limits of agreement |",
            "|---|---|---|---|---|---|",
        ]
        for r, p in pairs:
            loa = "-" if p.loa_low is None else f"{p.loa_low:.3f} to {p.loa_high:.3f} {r.unit}"
            out.append(
                f"| {r.measurement} | {_cell(p.first)} | {_cell(p.second)} | {p.n} | {_f(p.mean_difference)} {r.unit} "
                f"| {loa} |"
            )
    return "\n".join(out) + "\n"


def render(rows: Sequence[MeasurementAgreement], fmt: str) -> str:
    """The report as ``md`` or ``json`` text."""
    if fmt == "md":
        return report_markdown(rows)
    if fmt == "json":
        return json.dumps(report_json(rows), indent=1, allow_nan=False) + "\n"
    raise InvalidInputError(f"unknown agreement format {fmt!r}; use md or json")


def write_plots(
    rows: Sequence[MeasurementAgreement],
    reads: Iterable[Read],
    ai_reads: Iterable[Read],
    folder: str | Path,
) -> list[Path]:
    """One Bland-Altman PNG per measurement with statistics (a panel per pair); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from echomeasure.atomic import atomic_path

    out_dir = Path(folder).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"{folder}: is a file; give a folder for the plots")
    if not out_dir.parent.is_dir():
        raise InvalidInputError(f"{folder}: its parent folder does not exist")
    out_dir.mkdir(exist_ok=True)
    values: dict[tuple[str, str], dict[int, float]] = {}
    for r in [*reads, *ai_reads]:
        values.setdefault((r.measurement, r.reader), {})[r.clip_id] = r.value
    written = []
    for row in rows:
        pairs = [p for p in [*row.reader_pairs, *row.ai_vs_reader] if p.loa_low is not None]
        if not pairs:
            continue
        cols = min(3, len(pairs))
        nrows = math.ceil(len(pairs) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
        for ax, p in zip(axes.ravel()[: len(pairs)], pairs, strict=True):
            a, b = values[(row.measurement, p.first)], values[(row.measurement, p.second)]
            both = sorted(set(a) & set(b))
            x = np.array([(a[c] + b[c]) / 2 for c in both])
            d = np.array([a[c] - b[c] for c in both])
            ax.scatter(x, d, s=12, alpha=0.7)
            for y, style in ((p.mean_difference, "-"), (p.loa_low, "--"), (p.loa_high, "--")):
                ax.axhline(y, color="k" if style == "-" else "tab:red", linestyle=style, linewidth=1)
            ax.set_title(f"{p.first} - {p.second} (n={p.n})", fontsize=9)
            ax.set_xlabel(f"mean ({row.unit})", fontsize=8)
            ax.set_ylabel(f"difference ({row.unit})", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(pairs):]:
            ax.axis("off")
        fig.suptitle(f"Bland-Altman: {row.measurement}", fontsize=10)
        fig.tight_layout()
        target = out_dir / f"bland_altman_{row.measurement}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(target)
    return written


def run(store, *, fmt: str = "md", plots: str | Path | None = None, modes: Sequence[str] | None = None) -> str:
    """The agreement report of a store as text (and the plots, when a folder is given)."""
    try:
        reads, ai_reads = reads_from_store(store, modes=modes)
        rows = agreement(reads, ai_reads)
    except ImportError as exc:  # the optional statistics packages
        raise EchomeasureError(
            f"the agreement report needs {exc.name}: pip install 'echomeasure[reports]'"
        ) from None
    if plots is not None:
        write_plots(rows, reads, ai_reads, plots)
    return render(rows, fmt)
