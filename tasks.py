"""Entry points: ``invoke --list`` shows them all, ``invoke TASK --help`` explains one.

Each task is a thin shell: parse options, call the library, print where to look.
"""
import os
import sys

from invoke import task
from invoke.exceptions import Exit

from harness.presets import PRESETS  # the one list of preset names (no heavy imports)

RUN_HELP = {
    "study": "study name (a file in studies/) or path to a study YAML",
    "dataset": "run on this data set only: one of the study's, or a loader name instead (see `invoke data --help`)",
    "data_path": "folder (or file) holding the data set's files (with one data set)",
    "seeds": "number of seeds: the study's first N, extended with further seeds beyond its list (default: all)",
    "epochs": "epochs per training run (default: the study's, else the preset's)",
    "trials": "Optuna tuning budget per variant (default: the study's)",
    "preset": f"model/training preset: {' or '.join(PRESETS)} (default: the study's; see harness/presets.py)",
    "device": "cpu (default), cuda, cuda:N or auto",
    "workers": "local worker processes (joblib), sharing the CPU threads (default 1)",
    "storage": "Optuna storage: postgresql://... or a journal file path (default runs/optuna.journal)",
    "tracking_uri": "MLflow tracking URI: http://host:port, postgresql://..., sqlite:///... (default runs/mlflow.db)",
    "quick": "smoke test: tiny data, 1 epoch, 2 seeds, in its own experiment <study>.quick; explicit options win",
    "keep_checkpoints": "keep each finished run's last checkpoint (default: deleted once the run is in MLflow)",
    "checkpoint_dir": "where runs keep their per-epoch checkpoints (default runs/checkpoints)",
    "verbose": "show Optuna's and MLflow's INFO logs",
}


def _run_study(study, tune_only, **options):
    from harness import runner, studies
    from harness.data import DataFormatError
    from harness.storage import StorageError

    try:
        spec = studies.load(study).with_options(
            dataset=options["dataset"], data_path=options["data_path"], seeds=options["seeds"],
            epochs=options["epochs"], trials=options["trials"], preset=options["preset"], quick=options["quick"],
        )  # fmt: skip
        run_options = runner.RunOptions(
            device=options["device"], workers=options["workers"], storage=options["storage"],
            tracking_uri=options["tracking_uri"], tune_only=tune_only, checkpoint_dir=options["checkpoint_dir"],
            keep_checkpoints=options["keep_checkpoints"], verbose=options["verbose"],
        )  # fmt: skip
        outcome = runner.run(spec, run_options)
    except (studies.StudyError, StorageError, DataFormatError, FileNotFoundError) as exc:
        raise Exit(f"error: {exc}", code=2)
    _print_outcome(outcome, run_options)
    if not outcome.ok:
        raise Exit(
            f"{len(outcome.failed)} run(s) failed and {len(outcome.missing)} are missing; "
            "run the same command again to retry them.",
            code=1,
        )


def _print_outcome(outcome, options):
    """The summary of what the tracking store holds for this study (read from MLflow)."""
    from harness.storage import redact

    print(f"\n{outcome.ran} run(s) trained by this command.")
    if outcome.finished:
        import pandas as pd

        table = pd.DataFrame(outcome.finished)
        table["flagged"] = table.get("degenerate", pd.Series(index=table.index, dtype=object)).apply(
            lambda reason: isinstance(reason, str))  # fmt: skip
        keys = ["variant", "dataset", "setting"] if table["dataset"].nunique() > 1 else ["variant", "setting"]
        summary = table.groupby(keys, sort=False).agg(mean=("test_micro_f1", "mean"), std=("test_micro_f1", "std"),
                                                      seeds=("test_micro_f1", "count"), flagged=("flagged", "sum"))
        print(f"\nStudy {outcome.study}: test micro-F1 over seeds (flagged: runs that are no finding)\n"
              f"{summary.round(4).to_string()}")  # fmt: skip
        flagged = [u for u in outcome.finished if isinstance(u.get("degenerate"), str)]
        for unit in flagged:
            print(f"WARNING: {unit['variant']} seed {unit['seed']} ({unit['setting']}, {unit['dataset']}) is no "
                  f"finding: {unit['degenerate']}", file=sys.stderr)  # fmt: skip
    for unit in outcome.failed:
        print(f"FAILED {unit['variant']} seed {unit['seed']} ({unit['setting']}): {unit['reason']}", file=sys.stderr)
    uri = f" --tracking-uri {redact(options.tracking_uri)}" if options.tracking_uri else ""
    n_runs = len(outcome.finished)
    print(
        f"\n{n_runs} finished run(s) of this configuration are in MLflow experiment {outcome.experiment!r} "
        f"({redact(outcome.tracking_uri)}).\n"
        f"  browse:  invoke ui{uri}\n"
        f"  report:  invoke report --study {outcome.experiment}{uri}   (writes reports/build/index.html)"
    )


@task(help=RUN_HELP)
def ablate(c, study="no_shuffle", dataset=None, data_path=None, seeds=None, epochs=None, trials=None,
           preset=None, device="cpu", workers=1, storage=None, tracking_uri=None, quick=False,
           keep_checkpoints=False, checkpoint_dir=None, verbose=False):  # fmt: skip
    """Run a study: tuning (if it has a search space) then seeded repeats, tracked in MLflow."""
    _run_study(study, tune_only=False, **_options(locals()))


@task(help=RUN_HELP)
def tune(c, study="tune", dataset=None, data_path=None, seeds=None, epochs=None, trials=None,
         preset=None, device="cpu", workers=1, storage=None, tracking_uri=None, quick=False,
         keep_checkpoints=False, checkpoint_dir=None, verbose=False):  # fmt: skip
    """Run only the Optuna search of a study (pruned on validation micro-F1)."""
    _run_study(study, tune_only=True, **_options(locals()))


def _options(values: dict) -> dict:
    keep = ("dataset", "data_path", "seeds", "epochs", "trials", "preset", "device", "workers", "storage",
            "tracking_uri", "quick", "keep_checkpoints", "checkpoint_dir", "verbose")  # fmt: skip
    out = {k: values[k] for k in keep}
    for key in ("seeds", "epochs", "trials", "workers"):  # invoke passes option values as given
        if out[key] is not None:
            try:
                out[key] = int(out[key])
            except ValueError:
                raise Exit(f"error: --{key} must be a whole number, got {out[key]!r}", code=2) from None
    return out


@task(iterable=["plugin"], help={
    "plugin": "a plugin .py file (relative to the current folder) or dotted module whose models are listed too; "
              "repeatable",
    "check": "also build each plugin model on tiny data and check the model contract (README: Bring your own model)",
})  # fmt: skip
def variants(c, plugin=None, check=False):
    """List every registered model (CARAT variants, baselines, plugins) with its one-line description."""
    from pathlib import Path

    import models

    try:
        added = models.load_plugins(plugin or [], base_dir=Path.cwd())
        for name in added if check else []:
            models.check_contract(name)
    except models.PluginError as exc:
        raise Exit(f"error: {exc}", code=2)
    width = max(len(n) for n in models.list())
    for name in models.list():
        origin = f"  [plugin {models.source(name)}]" if name in added else ""
        print(f"{name:<{width}}  {models.describe(name)}{origin}")
    if check and added:
        print(f"\nmodel contract checked: {', '.join(added)}")


@task(name="studies")
def list_studies(c):
    """List the shipped studies with their variants."""
    from harness import studies

    for name in studies.names():
        study = studies.load(name)
        print(f"{name:<18} {', '.join(study.variants)}\n{'':<18} {study.description}")


@task(help={"tracking_uri": "MLflow store (default runs/mlflow.db)", "host": "interface to bind (default 127.0.0.1)",
            "port": "port (default 5000)"})  # fmt: skip
def ui(c, tracking_uri=None, host="127.0.0.1", port=5000):
    """Start the MLflow UI on the study store (localhost only unless --host is given)."""
    from harness.storage import prepare_tracking, redact

    uri = prepare_tracking(tracking_uri)
    print(f"MLflow UI for {redact(uri)} at http://{host}:{port}  (Ctrl-C to stop)")
    # The URI travels in the environment, not the command line, so a password never shows in `ps`.
    c.run(f"mlflow server --host {host} --port {port} --workers 1", env={"MLFLOW_BACKEND_STORE_URI": uri}, pty=False)


DATA_HELP = {
    "dataset": "synthetic (default), mosei_aligned, mosei_unaligned, m3ed, emotions, arff or npz",
    "data_path": "folder holding the data set's public files, or the file itself (synthetic takes none)",
    "option": "loader option KEY=VALUE, repeatable, value read as YAML (e.g. --option size=tiny)",
    "json": "print exactly one JSON object instead of the table",
}


@task(help=DATA_HELP, iterable=["option"])
def data(c, dataset="synthetic", data_path=None, option=None, json=False):
    """Load a data set and summarise it: modalities (T, D), labels, per-split sizes and label counts."""
    import json as json_lib

    from harness import data as datasets

    try:
        loaded = datasets.load(dataset, data_path=data_path, **_loader_options(option or []))
    except (datasets.DataFormatError, FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise Exit(f"error: {exc}", code=1)
    summary = loaded.summary()
    if json:
        print(json_lib.dumps(summary))
        return
    print(f"{summary['dataset']} ({'aligned' if loaded.aligned else 'unaligned'}) from {loaded.source}")
    print("modalities: " + ", ".join(f"{m} (T={t}, D={d})" for m, (t, d) in summary["modalities"].items()))
    labels = summary["labels"]
    widths = [max(len(name), 5) for name in labels]
    print(f"{'split':<6} {'n':>6}  " + "  ".join(f"{name:>{w}}" for name, w in zip(labels, widths)))
    for split, info in summary["splits"].items():
        counts = "  ".join(f"{count:>{w}}" for count, w in zip(info["label_counts"], widths))
        print(f"{split:<6} {info['n']:>6}  {counts}")


def _loader_options(pairs: list[str]) -> dict:
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Exit(f"error: --option takes KEY=VALUE, got {pair!r}", code=1)
        options[key.strip()] = yaml.safe_load(value)
    return options


REPORT_HELP = {
    "study": "study (MLflow experiment) to report; repeatable or comma-separated (default: every experiment)",
    "tracking_uri": "MLflow tracking URI to read (default runs/mlflow.db)",
    "storage": "Optuna storage holding the tuning studies, for importance/history plots (default runs/optuna.journal)",
    "out": "output folder (default reports/build)",
    "ui_url": "MLflow UI address run ids link to, e.g. http://127.0.0.1:5000 from `invoke ui` (default: the "
              "tracking URI when it is an http(s) server, else plain ids)",
}


@task(help=REPORT_HELP, iterable=["study"])
def report(c, study=None, tracking_uri=None, storage=None, out=None, ui_url=None):
    """Write tables (Markdown, LaTeX, CSV), significance tests and figures of finished studies to one index.html."""
    from pathlib import Path

    import reports
    from harness.storage import StorageError

    names = [name.strip() for value in study or [] for name in value.split(",") if name.strip()]
    out_dir = Path(out) if out else reports.DEFAULT_OUT
    try:
        summary = reports.generate(names or None, tracking_uri=tracking_uri, storage=storage, out_dir=out_dir,
                                   ui_url=ui_url, strict=True)
    except (reports.ReportError, StorageError) as exc:
        raise Exit(f"error: {exc}", code=2)
    for name, info in summary.items():
        missing = sum(len(seeds) for seeds in info["missing"].values())
        flagged = f", {info['n_flagged']} flagged as no finding" if info["n_flagged"] else ""
        print(f"{name:<20} {info['status']}: {info['n_finished']} finished repeat runs{flagged}, "
              f"{info['n_failed']} failed, {missing} expected run(s) missing")  # fmt: skip
    print(out_dir / "index.html")


BENCH_HELP = {
    "only": "run just this case, here in this process (e.g. carat-step); default: every case, each in a fresh process",
    "preset": "model preset of the step cases (default paper)",
    "batch": "batch size (default 64)",
    "steps": "timed steps per case, after one warm-up (default 5)",
    "threads": "torch CPU threads (default 2)",
    "json": "print one JSON object per case instead of a table",
    "studies": "also time the default no_shuffle study with 1 and 2 workers (default on; --no-studies skips)",
    "out": "folder for bench.md and bench.json (default runs/bench)",
}


@task(help=BENCH_HELP)
def bench(c, only=None, preset="paper", batch=64, steps=5, threads=2, json=False, studies=True, out=None):
    """Benchmark training-step time, peak memory and throughput (and whole-study wall time)."""
    import json as json_lib
    import platform
    from datetime import date
    from pathlib import Path

    from harness import bench as benchmarks
    from harness.storage import RUNS_DIR

    batch, steps, threads = int(batch), int(steps), int(threads)
    try:
        if only:
            results = [benchmarks.run_case(only, preset, batch, steps, threads, isolate=False)]
        else:
            plan = [("carat-step", "small")] + [(name, preset) for name in benchmarks.case_names()]
            results = []
            for name, case_preset in plan:
                print(f"bench {name} ({case_preset}) ...", file=sys.stderr, flush=True)
                results.append(benchmarks.run_case(name, case_preset, batch, steps, threads))
            if studies:
                for workers in (1, 2):
                    print(f"bench study no_shuffle, {workers} worker(s) ...", file=sys.stderr, flush=True)
                    results.append(benchmarks.time_study("no_shuffle", workers))
    except (ValueError, RuntimeError) as exc:
        raise Exit(f"error: {exc}", code=2)
    if json:
        for result in results:
            print(json_lib.dumps(result))
    else:
        import pandas as pd

        print(pd.DataFrame(results).drop(columns=["torch"], errors="ignore").to_string(index=False))
    if only:
        return
    folder = Path(out) if out else RUNS_DIR / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}"
    header = f"Measured {date.today()} on {machine} with `invoke bench --preset {preset} --batch {batch} --steps {steps} --threads {threads}`\n\n"
    (folder / "bench.json").write_text(json_lib.dumps({"machine": machine, "results": results}, indent=1))
    (folder / "bench.md").write_text(header + _markdown_table(pd.DataFrame(results).drop(columns=["torch"])))
    print(f"wrote {folder / 'bench.md'} and {folder / 'bench.json'}")


def _markdown_table(frame) -> str:
    frame = frame.convert_dtypes()  # integer columns stay integers beside the missing cells
    cells = frame.astype(object).where(frame.notna(), "")
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"
