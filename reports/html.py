"""The offline ``index.html``: one section per study, tables inline, figures by relative path."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape

import pandas as pd

CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2.5em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left}
th{background:#f2f2f2} tr.reference td{font-style:italic;color:#555;background:#fafafa}
p.note{font-size:.85em;color:#555;margin:.2em 0} .warn{color:#a40000}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee} figcaption{font-size:.85em;color:#555}
code{font-size:.9em} details{margin:.6em 0}
"""


@dataclass
class Figure:
    title: str
    path: str  # relative to index.html
    caption: str = ""


@dataclass
class Section:
    """What the page shows for one study (built by ``reports.generate``)."""

    name: str
    status: str  # "complete", "partial" (expected runs missing), "no finished runs", "no runs (no such experiment)"
    config_hash: str | None = None
    n_runs: int = 0  # every run of the experiment
    n_finished: int = 0  # the finished repeat runs reported
    meta: list[str] = field(default_factory=list)  # short facts: data set, config hash, run counts
    warnings: list[str] = field(default_factory=list)  # older configurations, duplicates ...
    results_html: str = ""
    significance_html: str = ""
    figures: list[Figure] = field(default_factory=list)
    figure_notes: list[str] = field(default_factory=list)  # why a figure is absent
    files: list[str] = field(default_factory=list)  # relative paths of the tables written
    missing: dict[str, list[int]] = field(default_factory=dict)  # unit -> expected seeds not finished
    have: dict[str, list[int]] = field(default_factory=dict)  # unit -> seeds finished
    expected_seeds: str = ""
    failed: pd.DataFrame | None = None
    runs: pd.DataFrame | None = None  # the reported runs: variant, setting, seed, run id ...

    @property
    def anchor(self) -> str:
        return "study-" + "".join(ch if ch.isalnum() else "-" for ch in self.name)


def page(sections: list[Section], tracking: str) -> str:
    toc = "".join(f'<li><a href="#{s.anchor}">{escape(s.name)}</a> — {escape(s.status)}</li>' for s in sections)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = "".join(_section(s) for s in sections) or "<p>No experiments found in this MLflow store.</p>"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Study report</title><style>{CSS}</style></head>"
        f"<body><h1>Study report</h1><p class='note'>Generated {stamp} from MLflow store "
        f"<code>{escape(tracking)}</code>. "
        "Every number below is recomputed from the FINISHED repeat runs (tag phase=repeat) of the most recent "
        f"configuration of each study.</p><ul>{toc}</ul>{body}</body></html>\n"
    )


def _section(s: Section) -> str:
    parts = [f'<h2 id="{s.anchor}">{escape(s.name)}</h2>']
    parts += [f"<p class='note'>{escape(m)}</p>" for m in s.meta]
    parts += [f"<p class='warn'>{escape(w)}</p>" for w in s.warnings]
    if s.status not in ("complete", "partial"):
        parts.append(f"<p><b>{escape(s.status.capitalize())}.</b></p>")
    if s.results_html:
        parts += ["<h3>Results</h3>", s.results_html]
    if s.files:
        links = ", ".join(f'<a href="{escape(f)}">{escape(f.rsplit("/", 1)[-1])}</a>' for f in s.files)
        parts.append(f"<p class='note'>Files: {links}</p>")
    if s.significance_html:
        parts += ["<h3>Ablations against full CARAT</h3>", s.significance_html]
    for fig in s.figures:
        parts.append(
            f"<figure><figcaption><b>{escape(fig.title)}</b> {escape(fig.caption)}</figcaption>"
            f'<img src="{escape(fig.path)}" alt="{escape(fig.title)}"></figure>'
        )
    parts += [f"<p class='note'>{escape(n)}</p>" for n in s.figure_notes]
    parts.append(_missing(s))
    if s.failed is not None and len(s.failed):
        parts += [f"<h3>Failed runs ({len(s.failed)})</h3>", _frame(s.failed)]
    if s.runs is not None and len(s.runs):
        summary = f"<summary>The {len(s.runs)} runs reported (MLflow run ids)</summary>"
        parts.append(f"<details>{summary}{_frame(s.runs)}</details>")
    return "".join(parts)


def _missing(s: Section) -> str:
    head = f"<p class='note'>Expected seeds: {escape(s.expected_seeds)}.</p>"
    if not s.missing:
        return head + "<p>Every expected run has finished.</p>" if s.status == "complete" else head
    items = "".join(
        f"<li>{escape(unit)}: missing seeds {_seeds(seeds)}; has {_seeds(s.have.get(unit, []))}</li>"
        for unit, seeds in s.missing.items()
    )
    return f"<h3>Missing runs</h3>{head}<ul>{items}</ul>"


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds)) if seeds else "none"


def _frame(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4f}")
