"""Build the report: read each study from MLflow, write its files and one index.html.

A report reads what MLflow recorded and runs no plugin code.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from harness.storage import DEFAULT_TRACKING_URI, redact, safe_name
from harness.tracking import client_for
from reports import collect, html, tables
from reports.configuration import _configuration_table
from reports.cross import _ranks
from reports.errors import ReportError, UnknownStudyError
from reports.figures import _figures
from reports.html import Part, Section
from reports.links import _with_links, ui_base
from reports.results_section import _tables
from reports.runs_section import _failed, _flagged, _runs_table, _unit, _variants_table, _warnings
from reports.tuning_section import _tuning

DEFAULT_OUT = Path(__file__).resolve().parent / "build"


GENERATED = ("*.png", "*.md", "*.tex", "*.csv")  # what a study folder may hold from an earlier report


def generate(
    studies: list[str] | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    out_dir: Path = DEFAULT_OUT,
    ui_url: str | None = None,
    strict: bool = False,
) -> dict:
    """Write the report of ``studies`` (None: every experiment in the store) under ``out_dir``.

    ``ui_url`` is the MLflow UI the run ids link to (default: the tracking URI when it is an MLflow
    server, else no links). With ``strict``, a study that is no experiment of the store raises
    ``UnknownStudyError`` naming the studies there, before anything is written; otherwise it gets a
    section saying so.

    Returns per study: status, config_hashes ({data set: config_hash reported}), n_runs (all runs
    of its experiment), n_finished (reported repeat runs), n_failed, n_flagged (reported runs tagged
    degenerate), missing ({"variant" or "variant (setting)" [+ " on <data set>"]: [seeds]}), tuning
    ({"variant" [+ " on <data set>"]: best_value, best_params, complete, pruned}) and the paths
    written."""
    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    _check_store(tracking_uri)
    ui = ui_base(tracking_uri, ui_url)
    client = client_for(tracking_uri)
    known = collect.experiment_names(client)
    names = list(studies) if studies else known
    unknown = [name for name in names if name not in known]
    if strict and unknown:
        there = f"studies there: {', '.join(known)}" if known else "it holds no studies yet (run one: invoke ablate)"
        raise UnknownStudyError(
            f"no study {', '.join(map(repr, unknown))} in the MLflow store {redact(tracking_uri)}; {there}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = [], {}
    for name in names:
        study = collect.load_study(client, name)
        section, paths = _report_study(client, study, storage, out_dir, ui)
        sections.append(section)
        summary[name] = {
            "status": section.status,
            "config_hashes": dict(study.config_hashes),
            "n_runs": section.n_runs,
            "n_finished": section.n_finished,
            "n_failed": 0 if section.failed is None else len(section.failed),
            "n_flagged": section.n_flagged,
            "missing": section.missing,
            "tuning": section.tuning.best if section.tuning is not None else {},
            "paths": [str(p) for p in paths],
        }
    index = out_dir / "index.html"
    index.write_text(html.page(sections, redact(tracking_uri), ui))
    return summary


def _check_store(uri: str) -> None:
    """A report reads; it must not create an empty store where the user mistyped a path."""
    if urlsplit(uri).scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise ReportError(f"no MLflow store at {path}: run a study first, or pass --tracking-uri")


def _clear(folder: Path) -> None:
    """Remove what an earlier report wrote there (and in its data set folders): a figure that cannot
    be drawn this time, or a data set no longer reported, must not linger."""
    if not folder.is_dir():
        return
    for place in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
        for pattern in GENERATED:
            for old in place.glob(pattern):
                old.unlink()


def _report_study(client, study: collect.StudyRuns, storage, out_dir: Path, ui) -> tuple[Section, list[Path]]:
    folder = out_dir / safe_name(study.name)
    _clear(folder)
    finished = study.finished
    tune_only = study.tune_only and finished.empty  # repeats of an earlier `invoke ablate` are reported
    missing = {} if tune_only else study.missing_seeds()
    if not study.exists:
        status = "no runs (no such experiment)"
    elif tune_only:
        status = html.TUNING_ONLY
    elif finished.empty:
        status = "no finished runs"
    else:
        status = "partial" if missing else "complete"
    section = Section(
        study.name,
        status,
        n_runs=len(study.runs),
        n_finished=len(finished),
        quick=study.quick,
        description=study.description,
    )
    section.warnings = _warnings(study)
    section.expected_seeds = f"{', '.join(map(str, study.expected_seeds)) or 'none'} ({study.seeds_source})"
    several = len(study.config_hashes) > 1
    done = finished.groupby(["dataset", "variant", "setting"])["seed"].apply(lambda s: sorted(int(x) for x in s))
    for (dataset, variant, setting), seeds in missing.items():
        unit = _unit(variant, setting) + (f" on {dataset}" if several else "")
        section.missing[unit] = seeds
        section.have[unit] = done.to_dict().get((dataset, variant, setting), [])
    section.failed = _with_links(_failed(study), study, ui)
    section.tuning, paths = _tuning(study, storage, folder, out_dir)
    if finished.empty:
        return section, paths

    if several:
        section.meta.append(
            f"{len(study.config_hashes)} data sets: {', '.join(study.config_hashes)}. Each has its "
            "own configuration, results, tests and figures below, then the verdict across them."
        )
    section.variants_html = tables.html(_variants_table(list(dict.fromkeys(finished["variant"]))), "variants")
    for dataset in study.config_hashes:
        sub = folder / safe_name(dataset) if several else folder
        part, written = _report_dataset(client, study, dataset, sub, out_dir, several)
        section.parts.append(part)
        paths += written
    if several:
        section.ranks, written = _ranks(study, finished, folder, out_dir)
        paths += written
    section.runs = _runs_table(finished, several, study, ui)
    return section, paths


def _report_dataset(client, study, dataset: str, folder: Path, out_dir: Path, several: bool) -> tuple[Part, list[Path]]:
    part = Part(dataset, heading=f"Data set: {dataset}" if several else None)
    runs = study.finished[study.finished["dataset"] == dataset]
    current = study.current[study.current["dataset"] == dataset]
    config = _configuration_table(runs, current, study.config_hashes[dataset])
    part.config_html = tables.html(config, css_class="config")
    if runs.empty:
        part.warnings.append(f"No finished repeat runs on {dataset} yet: nothing to report for it.")
        return part, []
    folder.mkdir(parents=True, exist_ok=True)
    part.flagged, part.n_flagged = _flagged(runs), int(tables.flagged_mask(runs).sum())
    heading = study.name + (f" on {dataset}" if several else "")
    config_md = folder / "configuration.md"
    config_md.write_text(f"# {heading}: configuration\n\n" + tables.markdown(config))
    paths = [config_md] + _tables(heading, runs, dataset, folder, part, study)
    paths += _figures(client, runs, folder, out_dir, part)
    part.files = [p.relative_to(out_dir).as_posix() for p in paths if p.suffix != ".png"]
    return part, paths
