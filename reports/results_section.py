"""The results tables of one data set (Markdown, LaTeX, CSV) and its significance tests against the
study's reference (the experiment's ``reference`` tag, else full CARAT, else the first variant)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.verdicts import DEFAULT_EQUIVALENCE_MARGIN, default_reference
from reports import rank_tables, references, significance, tables
from reports.cross import HEADLINE_METRIC
from reports.html import Part

REFERENCE_VARIANT = "carat"  # full CARAT: the default reference, and the model whose latents are drawn


def _tables(heading: str, runs: pd.DataFrame, dataset: str, folder: Path, part: Part, study=None) -> list[Path]:
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
    reference = getattr(study, "reference", None) or default_reference(present)
    margin = getattr(study, "equivalence_margin", None) or DEFAULT_EQUIVALENCE_MARGIN
    others = [v for v in present if v != reference]
    if reference not in present and others:
        part.warnings.append(f"The reference {reference!r} has no finished runs on {dataset}: no comparisons.")
    if reference in present and others:
        result = significance.compare(runs, others, reference, margin)
        if result.empty:
            return written
        sig_table = significance.table(result, reference)
        kind = "Ablations" if all(v in carat_variants for v in others) else "Variants"
        against = "full CARAT" if reference == REFERENCE_VARIANT else reference
        part.significance_title = f"{kind} against {against}, the reference (paired over seeds)"
        sequential = _sequential_note(study, runs, result, reference, margin)
        result.to_csv(folder / "significance.csv", index=False)
        (folder / "significance.md").write_text(
            f"# {heading}: {kind.lower()} against {reference}, the reference\n\n"
            + (f"{sequential}\n\n" if sequential else "")
            + tables.markdown(sig_table)
        )
        written += [folder / "significance.csv", folder / "significance.md"]
        part.significance_html = _significance_html(result, reference, sequential)
    return written


def _sequential_note(study, runs: pd.DataFrame, result: pd.DataFrame, reference: str, margin: float) -> str:
    """Where the seeds were added by ``--until-settled`` and the rows hold exactly its last look: the
    verdicts of the group-sequential procedure (re-read from the seeds, as the command did)."""
    looks, most = getattr(study, "sequential_looks", ()), getattr(study, "sequential_max_seeds", None)
    headline = result[(result["metric"] == HEADLINE_METRIC) & (result["setting"] == result["setting"].iloc[0])]
    if not looks or most is None or headline.empty or set(headline["n_pairs"]) != {looks[-1]}:
        return ""
    from harness.sequential import settle

    diffs = {}
    column = f"test_{HEADLINE_METRIC}"
    for row in headline.itertuples():
        seeds = [int(s) for s in row.seeds.split()]
        base = runs[runs["variant"] == reference].drop_duplicates("seed").set_index("seed")[column]
        other = runs[runs["variant"] == row.variant].drop_duplicates("seed").set_index("seed")[column]
        diffs[row.variant] = [other[s] - base[s] for s in seeds]
    try:
        verdicts, _ = settle(diffs, looks, most, HEADLINE_METRIC, margin)
    except ValueError:  # the tags do not fit these runs (edited by hand): no sequential claim
        return ""
    said = "; ".join(
        f"{v} {s.verdict} " + (f"(settled at {s.n_pairs} seeds)" if s.settled else f"(open at {s.n_pairs} seeds)")
        for v, s in verdicts.items()
    )
    return (
        f"Seeds added sequentially (--until-settled: looks at {', '.join(map(str, looks))} of at most {most} "
        f"seeds, O'Brien-Fleming group-sequential boundary, harness/sequential.py). Sequential verdicts on "
        f"{rank_tables.title(HEADLINE_METRIC)}: {said}. The table's verdicts are the fixed-sample ones over every seed."
    )


def _significance_html(result: pd.DataFrame, reference: str, sequential: str = "") -> str:
    """The headline metric's comparisons in view, every metric's folded below (significance.md has
    them all): with many variants the full table runs to a hundred rows."""
    from html import escape

    named = f"<p class='note'>Reference: <b>{escape(reference)}</b>; every other variant is compared with it.</p>"
    named += f"<p class='note'>{escape(sequential)}</p>" if sequential else ""
    headline = result[result["metric"] == HEADLINE_METRIC]
    if headline.empty or result["metric"].nunique() == 1:
        return named + tables.html(significance.table(result, reference), css_class="significance")
    every = tables.html(significance.table(result, reference, notes=False), css_class="significance")
    return (
        named
        + f"<p class='note'>{rank_tables.title(HEADLINE_METRIC)} shown; every metric below.</p>"
        + tables.html(significance.table(headline, reference), css_class="significance")
        + f"<details><summary>Every metric ({len(result)} comparisons)</summary>{every}</details>"
    )
