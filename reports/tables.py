"""Results tables in the paper's shape: mean ± std over seeds, a unique best per column marked.

``summarise`` does the arithmetic (pandas, from the runs' metrics); ``results_table`` lays it
out with the reference rows; ``markdown`` / ``latex`` / ``html`` render any ``Table``.
"""

from __future__ import annotations

import html as html_escape
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.metrics import METRIC_TITLES, higher_is_better
from harness.studies import DEFAULT_SETTING
from harness.tracking import FINAL_METRICS
from reports import references as cited
from reports.references import ReferenceRow, format_value

# (metric key, column title, higher is better), in the paper's column order; titles and directions
# come from harness/metrics.py, the one place they are stated.
COLUMNS = tuple(
    (key, METRIC_TITLES[key], higher_is_better(key))
    for key in (
        "acc",
        "hamming_loss",
        "micro_precision",
        "micro_recall",
        "micro_f1",
        "macro_f1",
        "subset_acc",
        "example_f1",
    )
)
DIGITS = 3
PR_NOTE = (
    "Precision and recall are computed the right way round (precision over the predictions, recall over "
    "the truth). The CARAT reference code calls its metric helper with the arguments swapped, so the "
    "precision it logs is our recall and vice versa (CARAT.md section 5)."
)
REFERENCE_MARK = "†"
FLAG_MARK = "⚠"


@dataclass
class Cell:
    text: str
    bold: bool = False
    css_class: str = ""  # the page's class for this cell (a verdict's colour); other formats ignore it


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    reference_rows: list[list[Cell]] = field(default_factory=list)  # shown after a rule, marked
    notes: list[str] = field(default_factory=list)
    label_columns: int | None = None  # leading text columns (LaTeX aligns them left); None: as results_table


def summarise(finished: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, setting) in first-seen order: n_seeds, seeds, run_ids, n_flagged and
    flagged_seeds (runs tagged ``degenerate``: no finding, yet counted in the means, since leaving
    them out would flatter the variant) and ``<metric>_mean`` / ``<metric>_std`` (sample std,
    ddof=1) of every final test metric."""
    rows = []
    for (variant, setting), group in finished.groupby(["variant", "setting"], sort=False):
        flagged = group[flagged_mask(group)]
        row = {
            "variant": variant,
            "setting": setting,
            "n_seeds": len(group),
            "seeds": " ".join(str(s) for s in group["seed"]),
            "run_ids": " ".join(group["run_id"]),
            "n_flagged": len(flagged),
            "flagged_seeds": " ".join(str(s) for s in flagged["seed"]),
        }
        for metric in FINAL_METRICS:
            values = pd.to_numeric(group.get(f"test_{metric}"), errors="coerce")
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1)  # NaN for a single seed
        rows.append(row)
    return pd.DataFrame(rows)


def flagged_mask(runs: pd.DataFrame) -> pd.Series:
    """Which runs carry a ``degenerate`` reason (the runner tags a result that is no finding)."""
    if "degenerate" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["degenerate"].apply(lambda reason: isinstance(reason, str) and bool(reason.strip()))


def results_table(summary: pd.DataFrame, references: tuple[ReferenceRow, ...] = ()) -> Table:
    with_setting = bool((summary["setting"] != DEFAULT_SETTING).any())
    header = ["Variant", *(["Setting"] if with_setting else []), *(title for _, title, _ in COLUMNS), "Seeds"]
    best = {key: _best(summary[f"{key}_mean"], higher) for key, _, higher in COLUMNS}
    rows = []
    for i, row in summary.iterrows():
        flagged = int(row.get("n_flagged", 0) or 0)
        name = row["variant"] + (f" {FLAG_MARK} {flagged} of {row['n_seeds']} runs flagged" if flagged else "")
        cells = [Cell(name)] + ([Cell(row["setting"])] if with_setting else [])
        for key, _, _ in COLUMNS:
            cells.append(Cell(mean_std(row[f"{key}_mean"], row[f"{key}_std"]), bold=bool(best[key][i])))
        rows.append(cells + [Cell(str(row["n_seeds"]))])
    reference_rows = [
        [Cell(f"{ref.method} {REFERENCE_MARK}")]
        + ([Cell("")] if with_setting else [])
        + [Cell(format_value(ref.values.get(key))) for key, _, _ in COLUMNS]
        + [Cell("")]
        for ref in references
    ]
    marked = (
        ""
        if len(summary) < 2
        else (
            " A column's best mean, as shown, is in bold (lowest for HL, the Hamming loss) when no other row"
            " shows the same"
            " value; ties are not marked" + ("; reference rows are not ranked." if references else ".")
        )
    )
    notes = ["Mean ± sample standard deviation over seeds (test split); Seeds = number of seeds." + marked, PR_NOTE]
    if "n_flagged" in summary and summary["n_flagged"].fillna(0).astype(int).any():
        notes.append(
            f"{FLAG_MARK} Runs flagged as no finding: a constant predictor, or no better than the label prior "
            "on validation (each run's reason is its MLflow tag degenerate, listed in the report). They are "
            "included in the mean and std."
        )
    for source in dict.fromkeys(ref.source for ref in references):
        notes.append(f"{REFERENCE_MARK} Reported elsewhere, not re-run here: {source}.")
    return Table(header, rows, reference_rows, notes)


# The paper's main table: aligned and unaligned CMU-MOSEI side by side per method, in the metrics
# the paper reports for them (accuracy, micro precision, recall and F1).
MAIN_TABLE_DATASETS = (("mosei_aligned", "Aligned"), ("mosei_unaligned", "Unaligned"))
MAIN_TABLE_COLUMNS = (
    ("acc", "Acc", True),
    ("micro_precision", "P", True),
    ("micro_recall", "R", True),
    ("micro_f1", "Mi-F1", True),
)


def paper_main_table(
    runs: pd.DataFrame,
    datasets: tuple[tuple[str, str], ...] = MAIN_TABLE_DATASETS,
    columns: tuple[tuple[str, str, bool], ...] = MAIN_TABLE_COLUMNS,
    references: dict[str, tuple[ReferenceRow, ...]] | None = None,
) -> Table | None:
    """The paper's main table from the plain runs frame (one row per run: ``variant``, ``dataset``,
    ``setting``, ``seed``, ``test_<metric>``, and ``degenerate``/``phase``/``status`` where present):
    one row per method, each data set of ``datasets`` ((name, title) pairs) a group of ``columns``
    side by side (methods in the order they first ran), mean ± std over seeds of the default setting's
    finished repeat runs, a unique best
    per column in bold, then the reference rows of each data set (``references.for_dataset`` unless
    given) with their values in their own data set's columns. None when no run is on those data sets."""
    runs = runs[runs["dataset"].isin([name for name, _ in datasets])]
    if "phase" in runs:
        runs = runs[runs["phase"] == "repeat"]
    if "status" in runs:
        runs = runs[runs["status"] == "FINISHED"]
    if "setting" in runs:
        runs = runs[runs["setting"] == DEFAULT_SETTING]
    if runs.empty:
        return None
    if "start_time" in runs:  # methods in the order they first ran (the study's order), not the store's
        runs = runs.sort_values("start_time", kind="stable")
    summaries = {name: summarise(runs[runs["dataset"] == name]).set_index("variant") for name, _ in datasets}
    summaries = {name: summary for name, summary in summaries.items() if len(summary)}
    methods = list(dict.fromkeys(runs["variant"]))
    header = ["Method"] + [f"{title} {label}" for _, title in datasets for _, label, _ in columns] + ["Seeds"]
    best = {}
    for name, _ in datasets:
        for key, _, higher in columns:
            means = summaries[name][f"{key}_mean"].reindex(methods) if name in summaries else None
            best[name, key] = (
                pd.Series(False, index=methods) if means is None else _best(means.reset_index(drop=True), higher)
            )
    rows, any_flagged = [], False
    for i, method in enumerate(methods):
        cells, seeds, flagged, n_runs = [Cell(method)], [], 0, 0
        for name, _ in datasets:
            row = summaries[name].loc[method] if name in summaries and method in summaries[name].index else None
            for key, _, _ in columns:
                if row is None:
                    cells.append(Cell("–"))
                else:
                    text = mean_std(row[f"{key}_mean"], row[f"{key}_std"])
                    cells.append(Cell(text, bold=bool(best[name, key].iloc[i])))
            seeds.append(str(int(row["n_seeds"])) if row is not None else "0")
            flagged += int(row["n_flagged"]) if row is not None else 0
            n_runs += int(row["n_seeds"]) if row is not None else 0
        if flagged:
            any_flagged = True
            cells[0] = Cell(f"{method} {FLAG_MARK} {flagged} of {n_runs} runs flagged")
        rows.append(cells + [Cell(" / ".join(seeds))])
    reference_rows, sources = [], []
    for name, _ in datasets:
        chosen = cited.for_dataset(name) if references is None else references.get(name, ())
        for ref in chosen:
            cells = [Cell(f"{ref.method} {REFERENCE_MARK}")]
            for other, _ in datasets:
                values = ref.values if other == name else {}
                cells += [Cell(format_value(values.get(key))) for key, _, _ in columns]
            reference_rows.append(cells + [Cell("")])
            sources.append(ref.source)
    titles = " and ".join(title.lower() for _, title in datasets)
    notes = [
        f"Mean ± sample standard deviation over seeds (test split), {titles} side by side; Seeds = seeds per data "
        "set in that order; – = not run on that data set. A column's best mean, as shown, is in bold when no other "
        "row shows the same value" + ("; reference rows are not ranked." if reference_rows else "."),
        PR_NOTE,
    ]
    if any_flagged:
        notes.append(
            f"{FLAG_MARK} Runs flagged as no finding (a constant predictor, or no better than the label prior on "
            "validation) are included in the mean and std."
        )
    for source in dict.fromkeys(sources):
        notes.append(f"{REFERENCE_MARK} Reported elsewhere, not re-run here: {source}.")
    return Table(header, rows, reference_rows, notes, label_columns=1)


def mean_std(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.{DIGITS}f}" if np.isnan(std) else f"{mean:.{DIGITS}f} ± {std:.{DIGITS}f}"


def _best(means: pd.Series, higher: bool) -> pd.Series:
    """The row whose mean, as displayed, is the best of the column, when it is the only one showing
    that value: a bold cell claims a winner, and a tie at the shown precision (two variants, or a
    column where every row is equal) has none. A single row is not a comparison: nothing is marked."""
    shown = means.round(DIGITS)
    if shown.notna().sum() < 2:
        return pd.Series(False, index=means.index)
    best = shown == (shown.max() if higher else shown.min())
    return best if best.sum() == 1 else pd.Series(False, index=means.index)


# -- rendering -------------------------------------------------------------------------------


def markdown(table: Table) -> str:
    def line(cells):
        return "| " + " | ".join(f"**{c.text}**" if c.bold and c.text else c.text for c in cells) + " |"

    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += [line(r) for r in table.rows + table.reference_rows]
    return "\n".join(lines + [""] + [f"{note}  " for note in table.notes]) + "\n"


def latex(table: Table) -> str:
    def line(cells):
        texts = [_tex(c.text) for c in cells]
        return " & ".join(rf"\textbf{{{t}}}" if c.bold and t else t for c, t in zip(cells, texts)) + r" \\"

    if table.label_columns is None:
        spec = "l" * (len(table.header) - len(COLUMNS) - 1) + "c" * len(COLUMNS) + "r"
    else:
        spec = "l" * table.label_columns + "c" * (len(table.header) - table.label_columns)
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule", " & ".join(map(_tex, table.header)) + r" \\", r"\midrule"]
    lines += [line(r) for r in table.rows]
    if table.reference_rows:
        lines += [r"\midrule"] + [line(r) for r in table.reference_rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = [rf"\par\smallskip{{\footnotesize {_tex(n)}}}" for n in table.notes]
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", *lines, *notes, r"\end{table}"]) + "\n"


def html(table: Table, css_class: str = "results") -> str:
    def row(cells, cls=""):
        tds = "".join(
            f"<td{_class(c.css_class)}>{'<b>' if c.bold else ''}{_h(c.text)}{'</b>' if c.bold else ''}</td>"
            for c in cells
        )
        return f"<tr{cls}>{tds}</tr>"

    head = "".join(f"<th>{_h(h)}</th>" for h in table.header)
    body = [row(r) for r in table.rows] + [row(r, ' class="reference"') for r in table.reference_rows]
    notes = "".join(f'<p class="note">{_h(n)}</p>' for n in table.notes)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{notes}'


def _class(css_class: str) -> str:
    return f' class="{_h(css_class)}"' if css_class else ""


def _h(text: str) -> str:
    return html_escape.escape(text)


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


def _tex(text: str) -> str:
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
    out = out.replace("±", r"$\pm$").replace("–", "--").replace(REFERENCE_MARK, r"$^\dagger$")
    return out.replace(FLAG_MARK, r"\textbf{(!)}").replace("Δ", r"$\Delta$").replace("−", "-")
