"""Study reports: tables, significance tests and figures recomputed from the MLflow runs.

    >>> import reports
    >>> reports.generate(["no_shuffle"], tracking_uri=None, storage=None, out_dir=reports.DEFAULT_OUT)

writes ``<out_dir>/index.html`` and, per study, ``<out_dir>/<study>/`` with configuration.md,
results.{md,tex,csv}, significance.{md,csv} (when variants are compared with full CARAT) and the
PNG figures. A study with several data sets gets those files per data set, in
``<out_dir>/<study>/<data set>/``, and in ``<out_dir>/<study>/`` the cross-data-set verdict:
ranks.md, ranks.csv, ranks_pairwise.csv and the critical-difference diagrams (reports/ranks.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from harness.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, open_optuna_storage, redact
from harness.studies import DEFAULT_SETTING
from harness.tracking import client_for
from reports import collect, html, plots, ranks, references, significance, tables
from reports.html import Figure, Part, RanksPart, Section
from reports.tables import Cell, Table

DEFAULT_OUT = Path(__file__).resolve().parent / "build"
GENERATED = ("*.png", "*.md", "*.tex", "*.csv")  # what a study folder may hold from an earlier report
REFERENCE_VARIANT = "carat"
HEADLINE_METRIC = "micro_f1"  # the metric whose pairwise verdict across data sets is shown unfolded


class ReportError(RuntimeError):
    """The report cannot be made at all (e.g. there is no tracking store)."""


class UnknownStudyError(ReportError):
    """A study asked for by name has no experiment in the store (a typo, or the wrong store)."""


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
    degenerate), missing ({"variant" or "variant (setting)" [+ " on <data set>"]: [seeds]}) and
    the paths written."""
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
            "paths": [str(p) for p in paths],
        }
    index = out_dir / "index.html"
    index.write_text(html.page(sections, redact(tracking_uri), ui))
    return summary


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str | None:
    """The MLflow UI address run ids link to: ``ui_url``, else the tracking URI when it is an MLflow
    server (http(s), whose address is also its UI's; credentials are dropped: the page is shared),
    else None (a file or database store has no UI until ``invoke ui`` serves one)."""
    if ui_url:
        parts = urlsplit(ui_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ReportError(f"--ui-url must be an http(s) address such as http://127.0.0.1:5000, got {ui_url!r}")
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], fragment="")).rstrip("/")
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="")).rstrip("/")
    return None


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow 3 UI (a hash-routed single-page app: ``/#/experiments/<id>/runs/<id>``,
    the address MLflow itself prints as "View run ... at")."""
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


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
    folder = out_dir / _safe(study.name)
    _clear(folder)
    finished = study.finished
    missing = study.missing_seeds()
    if not study.exists:
        status = "no runs (no such experiment)"
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
    if finished.empty:
        return section, []

    if several:
        section.meta.append(
            f"{len(study.config_hashes)} data sets: {', '.join(study.config_hashes)}. Each has its "
            "own configuration, results, tests and figures below, then the verdict across them."
        )
    section.variants_html = tables.html(_variants_table(list(dict.fromkeys(finished["variant"]))), "variants")
    paths = []
    for dataset in study.config_hashes:
        sub = folder / _safe(dataset) if several else folder
        part, written = _report_dataset(client, study, dataset, storage, sub, out_dir, several)
        section.parts.append(part)
        paths += written
    if several:
        section.ranks, written = _ranks(study, finished, folder, out_dir)
        paths += written
    section.runs = _runs_table(finished, several, study, ui)
    return section, paths


def _report_dataset(
    client, study, dataset: str, storage, folder: Path, out_dir: Path, several: bool
) -> tuple[Part, list[Path]]:
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
    paths = [config_md] + _tables(heading, runs, dataset, folder, part)
    paths += _figures(client, study, runs, storage, folder, out_dir, part)
    part.files = [p.relative_to(out_dir).as_posix() for p in paths if p.suffix != ".png"]
    return part, paths


def _flagged(runs: pd.DataFrame) -> list[str]:
    """One line per (variant, setting, reason) of the runs tagged degenerate, naming their seeds."""
    flagged = runs[tables.flagged_mask(runs)]
    lines = []
    for (variant, setting, reason), group in flagged.groupby(["variant", "setting", "degenerate"], sort=False):
        seeds = ", ".join(str(s) for s in sorted(int(x) for x in group["seed"]))
        where = "" if setting == DEFAULT_SETTING else f" ({setting})"
        lines.append(f"{variant}{where}, seed{'s' if len(group) > 1 else ''} {seeds}: {reason}")
    return lines


def _warnings(study: collect.StudyRuns) -> list[str]:
    notes = []
    if study.older_hashes:
        listed = ", ".join(f"{h} ({n} runs)" for h, n in study.older_hashes.items())
        notes.append(f"Runs of other (older) configurations of this study are not reported: {listed}.")
    repeats = study.current[(study.current["phase"] == "repeat") & (study.current["status"] == "FINISHED")]
    duplicated = len(repeats) - len(study.finished)
    if duplicated:
        notes.append(f"{duplicated} finished run(s) repeat a unit already run; the latest is used.")
    if "code_version" in study.finished and study.finished["code_version"].nunique() > 1:
        notes.append("The reported runs come from different code versions (see Code version in the configuration).")
    return notes


def _failed(study: collect.StudyRuns) -> pd.DataFrame:
    columns = ["dataset", "variant", "setting", "seed", "phase", "config_hash", "run_id", "failure_reason"]
    return study.failed[columns].reset_index(drop=True)


def _with_links(frame: pd.DataFrame, study: collect.StudyRuns, ui: str | None) -> pd.DataFrame:
    if ui and study.experiment_id is not None and len(frame):
        return frame.assign(run_url=[run_url(ui, study.experiment_id, r) for r in frame["run_id"]])
    return frame


def _runs_table(finished: pd.DataFrame, several: bool, study: collect.StudyRuns, ui: str | None) -> pd.DataFrame:
    """The reported runs, each traceable: run id (a link with a UI), name, headline scores, and the
    reason it is flagged where the runner tagged it degenerate."""
    columns = ["dataset", "variant", "setting", "seed", "run_id", "run_name", "test_micro_f1", "test_macro_f1"]
    runs = finished[columns].reset_index(drop=True)
    flags = tables.flagged_mask(finished).to_numpy()
    if flags.any():
        runs["flagged"] = [reason if flag else "" for reason, flag in zip(finished["degenerate"], flags)]
    if (runs["setting"] == DEFAULT_SETTING).all():
        runs = runs.drop(columns="setting")
    if not several:
        runs = runs.drop(columns="dataset")
    return _with_links(runs, study, ui)


def _variants_table(variants: list[str]) -> Table:
    """What each variant is, in the registry's one-line words, so the tables read without the code."""
    import models

    rows = []
    for name in variants:
        try:
            text = models.describe(name)
        except (KeyError, ValueError):
            text = "not registered in this code (a plugin model, or one renamed since)"
        rows.append([Cell(name), Cell(text)])
    return Table(["Variant", "What it is"], rows)


# -- configuration -----------------------------------------------------------------------------

CONFIG_FIELDS = (  # (row title, where it is read: a runs-table column, or a function of one run)
    ("Preset", "params.preset"),
    ("Epochs", "params.epochs"),
    ("Batch size", "params.batch_size"),
    ("Learning rate", "params.lr"),
    ("Optimizer", "params.optimizer"),
    ("Threshold", "params.threshold"),
)


def _configuration_table(runs: pd.DataFrame, current: pd.DataFrame, config_hash: str) -> Table:
    """The configuration the data set's numbers come from, read from the runs' params and tags (the
    default setting's finished repeat runs; without any, every run of the configuration). A field
    every variant shares is one value; one that differs is given per variant."""
    source = runs[runs["setting"] == DEFAULT_SETTING] if len(runs) else current
    if source.empty:
        source = runs if len(runs) else current
    fields = [
        *((title, _column(key)) for title, key in CONFIG_FIELDS),
        ("Data loader", _column("params.data.loader")),
        ("Data files", _data_path),
        ("Data options", _data_options),
        ("Samples train / valid / test", _split_sizes),
        ("Modalities (steps x features)", _modalities),
        ("Content fingerprint", _column("data_fingerprint")),
        ("config_hash", lambda run: config_hash),
        ("Code version", _column("code_version")),
    ]
    rows = [[Cell(title), Cell(_per_variant(source, read))] for title, read in fields]
    counts = current.groupby(["phase", "status"]).size()
    rows.append(
        [
            Cell("Runs of this configuration"),
            Cell("; ".join(f"{phase} {status}: {n}" for (phase, status), n in counts.items()) or "none"),
        ]
    )
    if len(runs):
        rows.append(
            [
                Cell("Reported"),
                Cell(
                    f"{len(runs)} finished repeat runs, seeds "
                    f"{' '.join(map(str, sorted(set(int(s) for s in runs['seed']))))}"
                ),
            ]
        )
    notes = [
        "Read from the reported runs' MLflow params, tags and dataset input"
        + (" (default setting)" if (runs["setting"] != DEFAULT_SETTING).any() else "")
        + "; a field that differs between variants is given per variant."
    ]
    swept = [s for s in dict.fromkeys(runs["setting"]) if s != DEFAULT_SETTING]
    if swept:
        notes.append(f"Swept settings change one field each: {', '.join(swept)}.")
    return Table(["Field", "Value"], rows, notes=notes)


def _per_variant(runs: pd.DataFrame, read) -> str:
    values = {}
    for variant, group in runs.groupby("variant", sort=False):
        values[variant] = ", ".join(dict.fromkeys(read(run) for _, run in group.iterrows()))
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) <= 1:
        return distinct[0] if distinct else "unknown"
    return "; ".join(f"{value} ({', '.join(v for v, x in values.items() if x == value)})" for value in distinct)


def _column(key: str):
    def read(run) -> str:
        value = run.get(key)
        return "unknown" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)

    return read


def _data_path(run) -> str:
    path = run.get("params.data.data_path")
    if isinstance(path, str) and path not in ("None", ""):
        return path
    return "none (built in or the loader's default)"


def _data_options(run) -> str:
    options = {
        str(k).removeprefix("params.data.options."): v
        for k, v in run.items()
        if str(k).startswith("params.data.options.") and isinstance(v, str)
    }
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "none"


def _profile(run) -> dict:
    try:
        return json.loads(run.get("input_profile") or "{}")
    except (TypeError, ValueError):
        return {}


def _split_sizes(run) -> str:
    profile = _profile(run)
    sizes = [profile.get(f"n_{split}") for split in ("train", "valid", "test")]
    return " / ".join(str(n) for n in sizes) if all(n is not None for n in sizes) else "unknown"


def _modalities(run) -> str:
    shapes = _profile(run).get("modalities") or {}
    text = ", ".join(f"{m} {t}x{d}" for m, (t, d) in shapes.items())
    labels = _profile(run).get("labels")
    return (text or "unknown") + (f"; {labels} labels" if labels is not None else "")


# -- tables ------------------------------------------------------------------------------------


def _tables(heading: str, runs: pd.DataFrame, dataset: str, folder: Path, part: Part) -> list[Path]:
    summary = tables.summarise(runs)
    loader = runs["params.data.loader"].dropna() if "params.data.loader" in runs else pd.Series(dtype=object)
    table = tables.results_table(summary, references.for_dataset(loader.iloc[0] if len(loader) else dataset))
    written = [folder / "results.csv", folder / "results.md", folder / "results.tex"]
    summary.to_csv(written[0], index=False)
    written[1].write_text(f"# {heading}: test results\n\n" + tables.markdown(table))
    written[2].write_text(tables.latex(table))
    part.results_html = tables.html(table)

    from models.carat import VARIANTS as CARAT_VARIANTS

    present = list(dict.fromkeys(runs["variant"]))
    others = [v for v in present if v != REFERENCE_VARIANT]
    if REFERENCE_VARIANT in present and others:
        result = significance.compare(runs, others, REFERENCE_VARIANT)
        if result.empty:
            return written
        sig_table = significance.table(result, REFERENCE_VARIANT)
        kind = "Ablations" if all(v in CARAT_VARIANTS for v in others) else "Variants"
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
        f"<p class='note'>{ranks.title(HEADLINE_METRIC)} shown; every metric below.</p>"
        + tables.html(significance.table(headline, REFERENCE_VARIANT), css_class="significance")
        + f"<details><summary>Every metric ({len(result)} comparisons)</summary>{every}</details>"
    )


# -- figures -----------------------------------------------------------------------------------


def _figures(client, study, runs: pd.DataFrame, storage, folder: Path, out_dir: Path, part: Part) -> list[Path]:
    labels = collect.label_names(client, runs["run_id"].iloc[0]) or sorted(
        c.removeprefix("test_f1_") for c in runs.columns if c.startswith("test_f1_") and runs[c].notna().any()
    )
    default = runs[runs["setting"] == DEFAULT_SETTING]
    history = collect.histories(client, list(default["run_id"]))
    if not history.empty:
        history = history.merge(default[["run_id", "variant", "seed"]], on="run_id")
    candidates = [
        ("Test metrics per variant", plots.metric_bars(runs, folder / "metrics.png"), "Default setting."),
        ("Per-label F1", plots.label_heatmap(runs, labels, folder / "per_label_f1.png"), "Mean over seeds."),
        (
            "Training curves",
            plots.training_curves(history, folder / "training_curves.png"),
            "From each run's per-epoch history (history.csv).",
        ),
        (
            "Sensitivity",
            plots.sensitivity(runs, _defaults(runs), folder / "sensitivity.png"),
            "Star: the default setting's value and result.",
        ),
    ]
    dataset = runs["dataset"].iloc[0]
    candidates += _optuna_figures(study, dataset, storage, folder, part)
    candidates += [_tsne_figure(client, runs, folder, part)]
    paths = []
    for title, path, caption in candidates:
        if path is not None:
            part.figures.append(Figure(title, path.relative_to(out_dir).as_posix(), caption))
            paths.append(path)
    return paths


def _defaults(finished: pd.DataFrame) -> dict[str, float]:
    """Each swept parameter's value in the default setting (from the runs' params)."""
    default = finished[finished["setting"] == DEFAULT_SETTING]
    swept = {s.partition("=")[0] for s in finished["setting"] if s != DEFAULT_SETTING}
    out = {}
    for name in swept:
        values = pd.to_numeric(default.get(f"params.{name}", pd.Series(dtype=object)), errors="coerce").dropna()
        if len(values):
            out[name] = float(values.iloc[0])
    return out


def _optuna_figures(
    study: collect.StudyRuns, dataset: str, storage: str | None, folder: Path, part: Part
) -> list[tuple]:
    tuning = study.tuning[study.tuning["dataset"] == dataset]
    if tuning.empty:
        return []
    url = storage or DEFAULT_STORAGE
    if "://" not in url and not Path(url.removeprefix("journal:")).exists():
        part.figure_notes.append(f"Tuning plots skipped: no Optuna storage at {url} (pass --storage).")
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_optuna_storage(url)
    out = []
    for variant, name in tuning.groupby("variant", sort=False)["optuna_study"].first().items():
        try:
            tune = optuna.load_study(study_name=name, storage=backend)
        except KeyError:
            part.figure_notes.append(f"Tuning plots for {variant}: no Optuna study {name!r} in {redact(url)}.")
            continue
        trials_all = tune.get_trials(deepcopy=False)
        complete = [t for t in trials_all if t.state.name == "COMPLETE"]
        pruned = sum(t.state.name == "PRUNED" for t in trials_all)
        trials = pd.DataFrame({"number": [t.number for t in complete], "value": [t.value for t in complete]})
        importances = None
        if len(complete) >= 2:
            try:
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
                importances = optuna.importance.get_param_importances(tune, evaluator=evaluator)
            except (RuntimeError, ValueError) as exc:
                part.figure_notes.append(f"Parameter importances for {variant} unavailable: {exc}")
        else:
            part.figure_notes.append(
                f"Parameter importances for {variant} need at least 2 complete tuning trials; it has {len(complete)}."
            )
        title = f"Tuning {variant}: {len(complete)} complete trials, {pruned} pruned"
        path = plots.optuna_summary(trials, importances, title, folder / f"tuning_{_safe(variant)}.png")
        out.append((f"Tuning: {variant}", path, f"Optuna study {name}."))
    return out


def _tsne_figure(client, runs: pd.DataFrame, folder: Path, part: Part) -> tuple:
    """Every variant whose runs kept latents, side by side, at one seed: the lowest seed all of them
    finished (the same data split and initialisation stream), else each variant's lowest seed."""
    none = ("t-SNE", None, "")
    default = runs[runs["setting"] == DEFAULT_SETTING]
    if default.empty:
        return none
    by_variant = {v: g.sort_values("seed") for v, g in default.groupby("variant", sort=False)}
    with_latents = [
        v for v, g in by_variant.items() if collect.has_artifact(client, g["run_id"].iloc[0], "latents.npz")
    ]
    if not with_latents:
        if REFERENCE_VARIANT in by_variant:
            part.figure_notes.append(f"No latents.npz in the runs of {REFERENCE_VARIANT}: no t-SNE of the latents.")
        return none
    common = set.intersection(*(set(int(s) for s in by_variant[v]["seed"]) for v in with_latents))
    seed = min(common) if common else None
    panels, used = {}, []
    for variant in with_latents:
        group = by_variant[variant]
        run = group[group["seed"] == seed].iloc[0] if seed is not None else group.iloc[0]
        arrays = collect.latents(client, run["run_id"])
        if arrays is None:
            part.figure_notes.append(f"No latents.npz in run {run['run_id']} ({variant}, seed {run['seed']}).")
            continue
        panels[variant if seed is not None else f"{variant}, seed {run['seed']}"] = arrays
        used.append(f"{variant} {run['run_id']}")
    title = "t-SNE of the label-specific latents (test)" + (f", seed {seed}" if seed is not None else "")
    path = plots.latent_tsne(panels, title, folder / "latents_tsne.png")
    without = [v for v in by_variant if v not in with_latents]
    caption = (
        f"Seed {seed}, the lowest seed every variant with latents finished."
        if seed is not None
        else "These variants share no finished seed: each at its lowest seed."
    )
    caption += f" Same subset size, perplexity and random_state 0 in every panel. Runs: {'; '.join(used)}."
    if without:
        caption += f" No latents kept by: {', '.join(without)}."
    return ("t-SNE of the latents", path, caption)


# -- across data sets --------------------------------------------------------------------------


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
    written = ranks.write(results, folder, heading=f"{study.name}: ranks across data sets")
    part = RanksPart(method_note=ranks.METHOD_NOTE)
    absent = [d for d in study.config_hashes if d not in set(default["dataset"])]
    if absent:
        part.notes.append(f"Left out, no finished runs in the default setting: {', '.join(absent)}.")
    shared = [n for n in results[0].notes if all(n in r.notes for r in results)] if results else []
    part.notes += shared
    for r in results:
        part.notes += [f"{ranks.title(r.metric)}: {n}" for n in r.notes if n not in shared]
    part.tables = [
        ("Average rank per metric (1 = best)", tables.html(ranks.average_rank_table(results))),
        (
            "Friedman / Iman-Davenport and the Nemenyi critical difference (CD)",
            tables.html(ranks.omnibus_table(results)),
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
        pairwise = tables.html(ranks.pairwise_table(r)) if len(r.pairwise) else "<p>No pair could be compared.</p>"
        scores_html = tables.html(ranks.per_dataset_table(r)) if len(r.ranks) else ""
        heading = f"Pairwise Wilcoxon-Holm over data sets: {ranks.title(r.metric)}"
        if r.metric == HEADLINE_METRIC:
            part.tables.append((heading, pairwise))
            part.details.insert(0, (f"Per data set scores and ranks: {ranks.title(r.metric)}", scores_html))
        else:
            part.details.append((heading + " (and the per data set scores)", pairwise + scores_html))
    part.files = [p.relative_to(out_dir).as_posix() for p in written if p.suffix != ".png"]
    return part, written


def _unit(variant: str, setting: str) -> str:
    return variant if setting == DEFAULT_SETTING else f"{variant} ({setting})"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
