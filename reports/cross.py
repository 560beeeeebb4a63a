"""The verdict across data sets: average ranks, Friedman / Nemenyi and the critical-difference diagrams."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness import keys
from harness.studies import DEFAULT_SETTING
from reports import collect, rank_tables, ranks, tables
from reports.html import Figure, RanksPart

HEADLINE_METRIC = keys.MICRO_F1  # the metric whose pairwise verdict across data sets is shown unfolded


def _ranks(study: collect.StudyRuns, finished: pd.DataFrame, folder: Path, out_dir: Path) -> tuple[RanksPart, list]:
    """Ranks of the variants across data sets on every table metric: the mean over seeds of each
    (data set, variant) in the default setting; a data set lacking a variant is left out (ranks'
    rule, named in its notes)."""
    default = finished[finished["setting"] == DEFAULT_SETTING]
    metrics = [(key, higher) for key, _, higher in tables.COLUMNS]
    columns = {f"test_{key}": key for key, _ in metrics}
    scores = default.groupby(["dataset", "variant"], sort=False, as_index=False)[list(columns)].mean()
    scores = scores.rename(columns=columns)
    results = ranks.verdicts(scores, metrics)
    written = rank_tables.write(results, folder, heading=f"{study.name}: ranks across data sets")
    part = RanksPart(method_note=ranks.METHOD_NOTE)
    absent = [d for d in study.config_hashes if d not in set(default["dataset"])]
    if absent:
        part.notes.append(f"Left out, no finished runs in the default setting: {', '.join(absent)}.")
    shared = [n for n in results[0].notes if all(n in r.notes for r in results)] if results else []
    part.notes += shared
    for r in results:
        part.notes += [f"{rank_tables.title(r.metric)}: {n}" for n in r.notes if n not in shared]
    part.tables = [
        ("Average rank per metric (1 = best)", tables.html(rank_tables.average_rank_table(results))),
        (
            "Friedman / Iman-Davenport and the Nemenyi critical difference (CD)",
            tables.html(rank_tables.omnibus_table(results)),
        ),
    ]
    captions = {
        "critical_difference.png": (
            "Critical-difference diagram (Nemenyi)",
            "Bars join variants whose average ranks differ by less than CD.",
        ),
        "critical_difference_wilcoxon.png": (
            "Critical-difference diagram (Wilcoxon-Holm)",
            "Bars join variants the pairwise Wilcoxon-Holm test cannot separate (Benavoli et al. 2016).",
        ),
    }
    for path in written:
        if path.name in captions:
            title, caption = captions[path.name]
            part.figures.append(Figure(title, path.relative_to(out_dir).as_posix(), caption))
    for r in results:
        pairwise = (
            tables.html(rank_tables.pairwise_table(r)) if len(r.pairwise) else "<p>No pair could be compared.</p>"
        )
        scores_html = tables.html(rank_tables.per_dataset_table(r)) if len(r.ranks) else ""
        heading = f"Pairwise Wilcoxon-Holm over data sets: {rank_tables.title(r.metric)}"
        if r.metric == HEADLINE_METRIC:
            part.tables.append((heading, pairwise))
            part.details.insert(0, (f"Per data set scores and ranks: {rank_tables.title(r.metric)}", scores_html))
        else:
            part.details.append((heading + " (and the per data set scores)", pairwise + scores_html))
    part.files = [p.relative_to(out_dir).as_posix() for p in written if p.suffix != ".png"]
    return part, written
