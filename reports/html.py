"""The offline ``index.html``: one section per study, tables inline, figures by relative path.

A reviewer reads it alone, so each section says first what could make its numbers no finding
(a smoke test, a partial study, flagged runs), then what was run on which data (configuration
per data set), then the results, tests and figures, and last where every number comes from
(run ids, linked to the MLflow UI when its address is known).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape

import pandas as pd

CSS = """
body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2.5em}
h3{margin-top:1.8em} h4{margin:1.2em 0 .3em}
section.dataset{border-left:4px solid #dde6f0;padding-left:1em;margin:1.5em 0}
section.ranks{border-left:4px solid #e4dcf0;padding-left:1em;margin:1.5em 0}
p.caveat{font-size:.9em;color:#5b3a00;margin:.3em 0}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f2f2f2} tr.reference td{font-style:italic;color:#555;background:#fafafa}
tr.flagged td{background:#fff4e5}
table.results td:not(:first-child),table.significance td{white-space:nowrap}
table.results td:first-child{min-width:8em}
table.results,table.significance{display:block;overflow-x:auto;max-width:100%}
table.significance td:last-child{white-space:normal}
td.verdict{color:#4b5563;font-weight:600} td.verdict-better{color:#166534;background:#dcfce7;font-weight:600}
td.verdict-worse{color:#991b1b;background:#fee2e2;font-weight:600}
td.verdict-equivalent{color:#1e3a8a;background:#dbeafe;font-weight:600}
table.config td:first-child{font-weight:600;background:#f7f7f7;white-space:nowrap}
p.note{font-size:.85em;color:#555;margin:.2em 0} .warn{color:#a40000}
div.banner{padding:.6em .9em;margin:.8em 0;border-radius:4px;font-weight:600}
div.banner.smoke{background:#fff3b0;border:3px dashed #b38600;color:#5c4400;font-size:1.05em}
div.banner.partial{background:#ffe3d6;border:2px solid #c2410c;color:#7c2d12}
div.banner.flagged{background:#fff4e5;border:1px solid #d97706;color:#7c2d12;font-weight:normal}
div.banner.flagged ul{margin:.3em 0 0 1.2em;padding:0}
span.status{font-size:.7em;font-weight:600;padding:.1em .5em;border-radius:3px;vertical-align:middle;margin-left:.4em}
span.status.complete{background:#dcfce7;color:#14532d}
span.status.partial{background:#c2410c;color:#fff}
span.status.empty{background:#e5e7eb;color:#374151}
span.status.tuning{background:#dbeafe;color:#1e3a8a}
div.banner.tuning{background:#eff6ff;border:2px solid #1e3a8a;color:#1e3a8a}
span.status.smoke{background:#fff3b0;color:#5c4400;border:1px dashed #b38600}
span.status.flags{background:#fff4e5;color:#7c2d12;border:1px solid #d97706}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee} figcaption{font-size:.85em;color:#555}
code{font-size:.9em} details{margin:.6em 0} summary{cursor:pointer}
"""


TUNING_ONLY = "tuning only"


@dataclass
class Figure:
    title: str
    path: str  # relative to index.html
    caption: str = ""


@dataclass
class Part:
    """One data set's block of a study section (with one data set, the section's whole body)."""

    dataset: str
    heading: str | None = None  # "Data set: NAME" with several data sets, None with one
    warnings: list[str] = field(default_factory=list)  # e.g. no finished runs on this data set
    flagged: list[str] = field(default_factory=list)  # "variant, seeds 1, 2: reason" for the runs tagged degenerate
    n_flagged: int = 0  # how many runs those lines name
    config_html: str = ""
    results_html: str = ""
    significance_title: str = ""
    significance_html: str = ""
    figures: list[Figure] = field(default_factory=list)
    figure_notes: list[str] = field(default_factory=list)  # why a figure is absent
    files: list[str] = field(default_factory=list)  # relative paths of the tables written

    @property
    def anchor(self) -> str:
        return "".join(ch if ch.isalnum() else "-" for ch in self.dataset)


@dataclass
class RanksPart:
    """The cross-data-set verdict of a study with several data sets (reports/ranks.py)."""

    method_note: str = ""
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, str]] = field(default_factory=list)  # (heading, table html), always shown
    details: list[tuple[str, str]] = field(default_factory=list)  # (summary, html), folded
    figures: list[Figure] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class TuningPart:
    """What a study's Optuna search found (reports/tuning_section.py)."""

    best_html: str = ""  # per variant (and data set): best trial, its value and parameters, trial counts
    trials_html: str = ""  # every complete or pruned trial
    n_trials: int = 0
    figures: list[Figure] = field(default_factory=list)  # Optuna's optimisation history, importances
    notes: list[str] = field(default_factory=list)  # why something is absent
    files: list[str] = field(default_factory=list)
    best: dict[str, dict] = field(default_factory=dict)  # "variant [on data set]" -> best value, params, counts


@dataclass
class Section:
    """What the page shows for one study (built by ``reports.generate``)."""

    name: str
    # "complete", "partial" (expected runs missing), "tuning only" (the last command was `invoke tune`),
    # "no finished runs", "no runs (no such experiment)"
    status: str
    n_runs: int = 0  # every run of the experiment
    n_finished: int = 0  # the finished repeat runs reported
    quick: bool = False  # a smoke test's experiment
    description: str = ""
    meta: list[str] = field(default_factory=list)  # short facts about the whole study
    warnings: list[str] = field(default_factory=list)  # older configurations, duplicates ...
    variants_html: str = ""  # what each variant is
    parts: list[Part] = field(default_factory=list)  # one per data set
    ranks: RanksPart | None = None  # several data sets only
    tuning: TuningPart | None = None  # a study with a search space
    missing: dict[str, list[int]] = field(default_factory=dict)  # unit -> expected seeds not finished
    have: dict[str, list[int]] = field(default_factory=dict)  # unit -> seeds finished
    expected_seeds: str = ""
    failed: pd.DataFrame | None = None
    runs: pd.DataFrame | None = None  # the reported runs: variant, setting, seed, run id, run_url, flagged ...

    @property
    def anchor(self) -> str:
        return "study-" + "".join(ch if ch.isalnum() else "-" for ch in self.name)

    @property
    def n_missing(self) -> int:
        return sum(len(seeds) for seeds in self.missing.values())

    @property
    def n_flagged(self) -> int:
        return sum(p.n_flagged for p in self.parts)


def page(sections: list[Section], tracking: str, ui_url: str | None = None) -> str:
    toc = "".join(f'<li><a href="#{s.anchor}">{escape(s.name)}</a>{_badges(s)}</li>' for s in sections)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = "".join(_section(s) for s in sections) or "<p>No experiments found in this MLflow store.</p>"
    links = (
        f" Run ids link to the MLflow UI at <code>{escape(ui_url)}</code>."
        if ui_url
        else " Run ids are MLflow run ids (pass --ui-url to link them to an MLflow UI)."
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Study report</title><style>{CSS}</style></head>"
        f"<body><h1>Study report</h1><p class='note'>Generated {stamp} from MLflow store "
        f"<code>{escape(tracking)}</code>. "
        "Every number below is recomputed from the FINISHED repeat runs (tag phase=repeat) of the most recent "
        f"configuration of each study and data set.{links}</p><ul class='toc'>{toc}</ul>{body}</body></html>\n"
    )


def _badges(s: Section) -> str:
    kind = {"complete": "complete", "partial": "partial", TUNING_ONLY: "tuning"}.get(s.status, "empty")
    text = s.status + (f": {s.n_missing} expected run(s) missing" if s.status == "partial" else "")
    out = f' <span class="status {kind}">{escape(text)}</span>'
    if s.quick:
        out += ' <span class="status smoke">smoke test</span>'
    if s.n_flagged:
        out += f' <span class="status flags">⚠ {s.n_flagged} run(s) flagged</span>'
    return out


def _section(s: Section) -> str:
    parts = [f'<section class="study" id="{s.anchor}"><h2>{escape(s.name)}{_badges(s)}</h2>']
    if s.quick:
        parts.append(
            "<div class='banner smoke'>SMOKE TEST: these runs come from --quick (tiny data, 1 epoch by "
            "default, 2 seeds). They check that the study runs end to end; they are not results.</div>"
        )
    if s.status == "partial":
        parts.append(
            f"<div class='banner partial'>PARTIAL: {s.n_missing} expected run(s) have not finished (see "
            f"<a href='#{s.anchor}-missing'>Missing runs</a>). The numbers below are not the study's final "
            "results.</div>"
        )
    elif s.status == TUNING_ONLY:
        parts.append(
            "<div class='banner tuning'>TUNING ONLY: the last command on this study ran its Optuna search "
            "alone (invoke tune), so it has no seeded repeats and no results table yet; none is missing. "
            "<code>invoke ablate</code> on the same study repeats each variant at its best parameters.</div>"
        )
    elif s.status not in ("complete",):
        parts.append(f"<p><b>{escape(s.status.capitalize())}.</b></p>")
    if s.description:
        parts.append(f"<p>{escape(s.description)}</p>")
    parts += [f"<p class='note'>{escape(m)}</p>" for m in s.meta]
    parts += [f"<p class='warn'>{escape(w)}</p>" for w in s.warnings]
    if s.variants_html:
        parts += ["<h3>Variants</h3>", s.variants_html]
    several = len(s.parts) > 1
    for part in s.parts:
        parts.append(_part(part, s.anchor, level=4 if several else 3))
    if s.ranks is not None:
        parts.append(_ranks(s.ranks, s.anchor))
    if s.tuning is not None:
        parts.append(_tuning(s.tuning))
    if s.status != TUNING_ONLY:
        parts.append(_missing(s))
    if s.failed is not None and len(s.failed):
        parts += [f"<h3>Failed runs ({len(s.failed)})</h3>", runs_table(s.failed)]
    if s.runs is not None and len(s.runs):
        flagged = int(s.runs["flagged"].astype(bool).sum()) if "flagged" in s.runs else 0
        extra = f", {flagged} flagged (highlighted)" if flagged else ""
        summary = f"<summary>The {len(s.runs)} runs reported (MLflow run ids{extra})</summary>"
        parts.append(f"<details{' open' if flagged else ''}>{summary}{runs_table(s.runs)}</details>")
    return "".join(parts) + "</section>"


def _part(p: Part, study_anchor: str, level: int) -> str:
    h = f"h{level}"
    out = []
    if p.heading:
        out.append(f'<section class="dataset" id="{study_anchor}-{p.anchor}"><h3>{escape(p.heading)}</h3>')
    out += [f"<p class='warn'>{escape(w)}</p>" for w in p.warnings]
    if p.flagged:
        items = "".join(f"<li>{escape(f)}</li>" for f in p.flagged)
        out.append(
            f"<div class='banner flagged'><b>⚠ {p.n_flagged} run(s) flagged as no finding</b> (the "
            f"runner's degenerate tag; they stay in the means, marked in the results table and the runs "
            f"table):<ul>{items}</ul></div>"
        )
    if p.config_html:
        out += [f"<{h}>Configuration</{h}>", p.config_html]
    if p.results_html:
        out += [f"<{h}>Results</{h}>", p.results_html]
    if p.files:
        out.append(f"<p class='note'>Files: {_links(p.files)}</p>")
    if p.significance_html:
        out += [f"<{h}>{escape(p.significance_title)}</{h}>", p.significance_html]
    out += [_figure(fig) for fig in p.figures]
    out += [f"<p class='note'>{escape(n)}</p>" for n in p.figure_notes]
    if p.heading:
        out.append("</section>")
    return "".join(out)


def _ranks(r: RanksPart, study_anchor: str) -> str:
    out = [
        f'<section class="ranks" id="{study_anchor}-ranks"><h3>Across data sets: which variant wins?</h3>',
        f"<p class='note'>{escape(r.method_note)}</p>",
    ]
    out += [f"<p class='caveat'>{escape(n)}</p>" for n in r.notes]
    for heading, table in r.tables:
        out += [f"<h4>{escape(heading)}</h4>", table]
    out += [_figure(fig) for fig in r.figures]
    for summary, content in r.details:
        out.append(f"<details><summary>{escape(summary)}</summary>{content}</details>")
    if r.files:
        out.append(f"<p class='note'>Files: {_links(r.files)}</p>")
    return "".join(out) + "</section>"


def _tuning(t: TuningPart) -> str:
    out = ["<h3>Tuning</h3>"]
    if t.best_html:
        out += ["<h4>Best parameters (validation micro-F1)</h4>", t.best_html]
    if t.trials_html:
        out.append(f"<details><summary>The {t.n_trials} complete or pruned trials</summary>{t.trials_html}</details>")
    out += [_figure(fig) for fig in t.figures]
    out += [f"<p class='note'>{escape(n)}</p>" for n in t.notes]
    if t.files:
        out.append(f"<p class='note'>Files: {_links(t.files)}</p>")
    return "".join(out)


def _figure(fig: Figure) -> str:
    return (
        f"<figure><figcaption><b>{escape(fig.title)}</b> {escape(fig.caption)}</figcaption>"
        f'<img src="{escape(fig.path)}" alt="{escape(fig.title)}"></figure>'
    )


def _links(files: list[str]) -> str:
    return ", ".join(f'<a href="{escape(f)}">{escape(f)}</a>' for f in files)


def _missing(s: Section) -> str:
    head = f"<p class='note'>Expected seeds: {escape(s.expected_seeds)}.</p>"
    if not s.missing:
        return head + "<p>Every expected run has finished.</p>" if s.status == "complete" else head
    items = "".join(
        f"<li>{escape(unit)}: missing seeds {_seeds(seeds)}; has {_seeds(s.have.get(unit, []))}</li>"
        for unit, seeds in s.missing.items()
    )
    return f"<h3 id='{s.anchor}-missing'>Missing runs</h3>{head}<ul>{items}</ul>"


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds)) if seeds else "none"


def runs_table(frame: pd.DataFrame) -> str:
    """Runs as an HTML table: ``run_id`` links to ``run_url`` when the frame has one, a row whose
    ``flagged`` reason is set is highlighted; other columns are shown as they are (floats to 4 places)."""
    shown = [c for c in frame.columns if c != "run_url"]
    head = "".join(f"<th>{escape(str(c))}</th>" for c in shown)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            text = (
                ""
                if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA
                else (f"{value:.4f}" if isinstance(value, float) else str(value))
            )
            if column == "run_id" and isinstance(row.get("run_url"), str) and row["run_url"]:
                text = f'<a href="{escape(row["run_url"])}"><code>{escape(text)}</code></a>'
            elif column == "run_id":
                text = f"<code>{escape(text)}</code>"
            else:
                text = escape(text)
            cells.append(f"<td>{text}</td>")
        flagged = isinstance(row.get("flagged"), str) and bool(row.get("flagged"))
        body.append(f"<tr{' class=flagged' if flagged else ''}>{''.join(cells)}</tr>")
    return f"<table class='runs'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
