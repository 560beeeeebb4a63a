"""The results tables of one data set (Markdown, LaTeX, CSV) and its significance tests against full CARAT."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports import rank_tables, references, significance, tables
from reports.cross import HEADLINE_METRIC
from reports.html import Part

REFERENCE_VARIANT = "carat"


def _tables(heading: str, runs: pd.DataFrame, dataset: str, folder: Path, part: Part) -> list[Path]:
    summary = tables.summarise(runs)
    loader = runs["params.data.loader"].dropna() if "params.data.loader" in runs else pd.Series(dtype=object)
    table = tables.results_table(summary, references.for_dataset(loader.iloc[0] if len(loader) else dataset))
    written = [folder / "results.csv", folder / "results.md", folder / "results.tex"]
    summary.to_csv(written[0], index=False)
    written[1].write_text(f"# {heading}: test results\n\n" + tables.markdown(table))
    written[2].write_text(tables.latex(table))
    part.results_html = tables.html(table)

    import models  # the registry says which names are CARAT's own variants

    carat_variants = set(models.names_from("models.carat"))

    present = list(dict.fromkeys(runs["variant"]))
    others = [v for v in present if v != REFERENCE_VARIANT]
    if REFERENCE_VARIANT in present and others:
        result = significance.compare(runs, others, REFERENCE_VARIANT)
        if result.empty:
            return written
        sig_table = significance.table(result, REFERENCE_VARIANT)
        kind = "Ablations" if all(v in carat_variants for v in others) else "Variants"
        part.significance_title = f"{kind} against full CARAT (paired over seeds)"
        result.to_csv(folder / "significance.csv", index=False)
        (folder / "significance.md").write_text(
            f"# {heading}: {kind.lower()} against {REFERENCE_VARIANT}\n\n" + tables.markdown(sig_table)
        )
        written += [folder / "significance.csv", folder / "significance.md"]
        part.significance_html = _significance_html(result)
    return written


def _significance_html(result: pd.DataFrame) -> str:
    """The headline metric's comparisons in view, every metric's folded below (significance.md has
    them all): with many variants the full table runs to a hundred rows."""
    headline = result[result["metric"] == HEADLINE_METRIC]
    if headline.empty or result["metric"].nunique() == 1:
        return tables.html(significance.table(result, REFERENCE_VARIANT), css_class="significance")
    every = tables.html(significance.table(result, REFERENCE_VARIANT, notes=False), css_class="significance")
    return (
        f"<p class='note'>{rank_tables.title(HEADLINE_METRIC)} shown; every metric below.</p>"
        + tables.html(significance.table(headline, REFERENCE_VARIANT), css_class="significance")
        + f"<details><summary>Every metric ({len(result)} comparisons)</summary>{every}</details>"
    )
