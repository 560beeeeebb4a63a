"""Study reports: tables, significance tests and figures recomputed from the MLflow runs.

    >>> import reports
    >>> reports.generate(["no_shuffle"], tracking_uri=None, storage=None, out_dir=reports.DEFAULT_OUT)

writes ``<out_dir>/index.html`` and, per study, ``<out_dir>/<study>/`` with results.{md,tex,csv},
significance.{md,csv} (ablation studies) and the PNG figures.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from harness.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, open_optuna_storage, redact
from harness.studies import DEFAULT_SETTING
from harness.tracking import client_for
from reports import collect, html, plots, references, significance, tables
from reports.html import Figure, Section

DEFAULT_OUT = Path(__file__).resolve().parent / "build"
GENERATED = ("*.png", "*.md", "*.tex", "*.csv")  # what a study folder may hold from an earlier report
REFERENCE_VARIANT = "carat"


class ReportError(RuntimeError):
    """The report cannot be made at all (e.g. there is no tracking store)."""


def generate(
    studies: list[str] | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    out_dir: Path = DEFAULT_OUT,
) -> dict:
    """Write the report of ``studies`` (None: every experiment in the store) under ``out_dir``.

    Returns per study: status, config_hashes ({data set: config_hash reported}), n_runs (all runs
    of its experiment), n_finished
    (reported repeat runs), n_failed, missing ({"variant" or "variant (setting)": [seeds]}) and
    the paths written."""
    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    _check_store(tracking_uri)
    client = client_for(tracking_uri)
    names = list(studies) if studies else collect.experiment_names(client)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = [], {}
    for name in names:
        study = collect.load_study(client, name)
        section, paths = _report_study(client, study, storage, out_dir)
        sections.append(section)
        summary[name] = {
            "status": section.status,
            "config_hashes": dict(study.config_hashes),
            "n_runs": section.n_runs,
            "n_finished": section.n_finished,
            "n_failed": 0 if section.failed is None else len(section.failed),
            "missing": section.missing,
            "paths": [str(p) for p in paths],
        }
    index = out_dir / "index.html"
    index.write_text(html.page(sections, redact(tracking_uri)))
    return summary


def _check_store(uri: str) -> None:
    """A report reads; it must not create an empty store where the user mistyped a path."""
    if urlsplit(uri).scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise ReportError(f"no MLflow store at {path}: run a study first, or pass --tracking-uri")


def _report_study(client, study: collect.StudyRuns, storage: str | None, out_dir: Path) -> tuple[Section, list[Path]]:
    folder = out_dir / _safe(study.name)
    for pattern in GENERATED:  # a figure that cannot be drawn this time must not linger from the last report
        for old in folder.glob(pattern):
            old.unlink()
    finished = study.finished
    missing = study.missing_seeds()
    if not study.exists:
        status = "no runs (no such experiment)"
    elif finished.empty:
        status = "no finished runs"
    else:
        status = "partial" if missing else "complete"
    config = ", ".join(f"{d}: {h}" for d, h in study.config_hashes.items()) or None
    section = Section(study.name, status, config, n_runs=len(study.runs), n_finished=len(finished))
    section.meta = _meta(study, finished)
    section.warnings = _warnings(study)
    section.expected_seeds = f"{', '.join(map(str, study.expected_seeds)) or 'none'} ({study.seeds_source})"
    several = len(study.config_hashes) > 1
    done = finished.groupby(["dataset", "variant", "setting"])["seed"].apply(lambda s: sorted(int(x) for x in s))
    for (dataset, variant, setting), seeds in missing.items():
        unit = _unit(variant, setting) + (f" on {dataset}" if several else "")
        section.missing[unit] = seeds
        section.have[unit] = done.to_dict().get((dataset, variant, setting), [])
    section.failed = _failed(study)
    if finished.empty:
        return section, []

    folder.mkdir(parents=True, exist_ok=True)
    paths = _tables(study, finished, folder, section)
    paths += _figures(client, study, finished, storage, folder, section)
    section.files = [f"{folder.name}/{p.name}" for p in paths if p.suffix != ".png"]
    columns = ["dataset", "variant", "setting", "seed", "run_id", "run_name", "test_micro_f1", "test_macro_f1"]
    section.runs = finished[columns]
    if (section.runs["setting"] == DEFAULT_SETTING).all():
        section.runs = section.runs.drop(columns="setting")
    if not several:
        section.runs = section.runs.drop(columns="dataset")
    return section, paths


def _meta(study: collect.StudyRuns, finished: pd.DataFrame) -> list[str]:
    """Which data and configuration each reported number comes from."""
    lines = []
    current = study.current
    for dataset, config in study.config_hashes.items():
        runs = current[current["dataset"] == dataset]
        first = runs.iloc[-1]
        where = first.get("params.data.data_path")
        options = {k.removeprefix("params.data.options."): v for k, v in first.items()
                   if str(k).startswith("params.data.options.") and isinstance(v, str)}  # fmt: skip
        counts = runs.groupby(["phase", "status"]).size()
        described = "; ".join(f"{phase} {status}: {n}" for (phase, status), n in counts.items())
        lines.append(
            f"Data set {dataset}: loader {first.get('params.data.loader') or dataset}"
            + (f", files {where}" if isinstance(where, str) and where != "None" else "")
            + (f", options {options}" if options else "")
            + f"; content fingerprint {first.get('data_fingerprint') or 'unknown'}. "
            f"Configuration (config_hash) {config}. Runs of it: {described or 'none'}; "
            f"reported: {int((finished['dataset'] == dataset).sum())} finished repeat runs."
        )
    versions = sorted(set(finished["code_version"].dropna())) if "code_version" in finished else []
    if versions:
        lines.append(f"Code version(s) of the reported runs: {', '.join(versions)}.")
    return lines


def _warnings(study: collect.StudyRuns) -> list[str]:
    notes = []
    if study.quick:
        notes.append("SMOKE TEST: these runs come from --quick (tiny data, 1 epoch by default); they are not results.")
    if study.older_hashes:
        listed = ", ".join(f"{h} ({n} runs)" for h, n in study.older_hashes.items())
        notes.append(f"Runs of other (older) configurations of this study are not reported: {listed}.")
    repeats = study.current[(study.current["phase"] == "repeat") & (study.current["status"] == "FINISHED")]
    duplicated = len(repeats) - len(study.finished)
    if duplicated:
        notes.append(f"{duplicated} finished run(s) repeat a unit already run; the latest is used.")
    if "code_version" in study.finished and study.finished["code_version"].nunique() > 1:
        notes.append("The reported runs come from different code versions (see the runs table).")
    return notes


def _failed(study: collect.StudyRuns) -> pd.DataFrame:
    columns = ["dataset", "variant", "setting", "seed", "phase", "config_hash", "run_id", "failure_reason"]
    return study.failed[columns].reset_index(drop=True)


def _tables(study: collect.StudyRuns, finished: pd.DataFrame, folder: Path, section: Section) -> list[Path]:
    summary = tables.summarise(finished)
    dataset = finished["dataset"].dropna().iloc[0] if finished["dataset"].notna().any() else None
    table = tables.results_table(summary, references.for_dataset(dataset))
    written = [folder / "results.csv", folder / "results.md", folder / "results.tex"]
    summary.to_csv(written[0], index=False)
    written[1].write_text(f"# {study.name}: test results\n\n" + tables.markdown(table))
    written[2].write_text(tables.latex(table))
    section.results_html = tables.html(table)

    from models.carat import VARIANTS as CARAT_VARIANTS

    present = list(dict.fromkeys(finished["variant"]))
    ablations = [v for v in present if v in CARAT_VARIANTS and v != REFERENCE_VARIANT]
    if REFERENCE_VARIANT in present and ablations:
        result = significance.compare(finished, ablations, REFERENCE_VARIANT)
        sig_table = significance.table(result, REFERENCE_VARIANT)
        result.to_csv(folder / "significance.csv", index=False)
        (folder / "significance.md").write_text(f"# {study.name}: ablations against {REFERENCE_VARIANT}\n\n"
                                                + tables.markdown(sig_table))  # fmt: skip
        written += [folder / "significance.csv", folder / "significance.md"]
        section.significance_html = tables.html(sig_table, css_class="significance")
    return written


def _figures(client, study, finished: pd.DataFrame, storage, folder: Path, section: Section) -> list[Path]:
    labels = collect.label_names(client, finished["run_id"].iloc[0]) or sorted(
        c.removeprefix("test_f1_") for c in finished.columns if c.startswith("test_f1_")
    )
    default = finished[finished["setting"] == DEFAULT_SETTING]
    history = collect.histories(client, list(default["run_id"]))
    if not history.empty:
        history = history.merge(default[["run_id", "variant", "seed"]], on="run_id")
    candidates = [
        ("Test metrics per variant", plots.metric_bars(finished, folder / "metrics.png"), "Default setting."),
        ("Per-label F1", plots.label_heatmap(finished, labels, folder / "per_label_f1.png"), "Mean over seeds."),
        ("Training curves", plots.training_curves(history, folder / "training_curves.png"),
         "From each run's per-epoch history (history.csv)."),
        ("Sensitivity", plots.sensitivity(finished, _defaults(finished), folder / "sensitivity.png"),
         "Star: the default setting's value and result."),
    ]  # fmt: skip
    candidates += _optuna_figures(study, storage, folder, section)
    candidates += [_tsne_figure(client, finished, folder, section)]
    paths = []
    for title, path, caption in candidates:
        if path is not None:
            section.figures.append(Figure(title, f"{folder.name}/{path.name}", caption))
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


def _optuna_figures(study: collect.StudyRuns, storage: str | None, folder: Path, section: Section) -> list[tuple]:
    tuning = study.tuning
    if tuning.empty:
        return []
    url = storage or DEFAULT_STORAGE
    if "://" not in url and not Path(url.removeprefix("journal:")).exists():
        section.figure_notes.append(f"Tuning plots skipped: no Optuna storage at {url} (pass --storage).")
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_optuna_storage(url)
    out = []
    for variant, name in tuning.groupby("variant", sort=False)["optuna_study"].first().items():
        try:
            tune = optuna.load_study(study_name=name, storage=backend)
        except KeyError:
            section.figure_notes.append(f"Tuning plots for {variant}: no Optuna study {name!r} in {redact(url)}.")
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
                section.figure_notes.append(f"Parameter importances for {variant} unavailable: {exc}")
        else:
            section.figure_notes.append(
                f"Parameter importances for {variant} need at least 2 complete tuning trials; it has {len(complete)}."
            )
        title = f"Tuning {variant}: {len(complete)} complete trials, {pruned} pruned"
        path = plots.optuna_summary(trials, importances, title,
                                    folder / f"tuning_{_safe(variant)}.png")  # fmt: skip
        out.append((f"Tuning: {variant}", path, f"Optuna study {name}."))
    return out


def _tsne_figure(client, finished: pd.DataFrame, folder: Path, section: Section) -> tuple:
    runs = finished[(finished["variant"] == REFERENCE_VARIANT) & (finished["setting"] == DEFAULT_SETTING)]
    if runs.empty:
        return ("t-SNE", None, "")
    run = runs.sort_values("seed").iloc[0]
    arrays = collect.latents(client, run["run_id"])
    if arrays is None:
        section.figure_notes.append(f"No latents.npz in run {run['run_id']}: no t-SNE of CARAT's latents.")
        return ("t-SNE", None, "")
    title = f"{REFERENCE_VARIANT}, seed {run['seed']}"
    path = plots.latent_tsne(arrays, title, folder / "latents_tsne.png")
    return ("t-SNE of CARAT's label-specific latents (test)", path, f"Run {run['run_id']}; random_state 0.")


def _unit(variant: str, setting: str) -> str:
    return variant if setting == DEFAULT_SETTING else f"{variant} ({setting})"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
