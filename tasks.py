"""Entry points: ``invoke --list`` shows them all, ``invoke TASK --help`` explains one.

Each task is a thin shell: parse options, call the library, print where to look.
"""
import os
import sys

from invoke import task
from invoke.exceptions import Exit

RUN_HELP = {
    "study": "study name (a file in studies/) or path to a study YAML",
    "dataset": "data set to use instead of the study's (see `invoke data --help`)",
    "data_path": "folder (or file) holding the data set's files",
    "seeds": "run only the first N seeds of the study",
    "epochs": "epochs per training run (default: the study's, else the preset's)",
    "trials": "Optuna tuning budget per variant",
    "preset": "model/training preset: small or paper",
    "device": "cpu (default), cuda, cuda:N or auto",
    "workers": "local worker processes (joblib), sharing the CPU threads",
    "storage": "Optuna storage: postgresql://... or a journal file path (default runs/optuna.journal)",
    "tracking_uri": "MLflow tracking URI: http://host:port, postgresql://..., sqlite:///... (default runs/mlflow.db)",
    "quick": "smoke test: tiny data, 1 epoch, 2 seeds",
}


def _run_study(study, tune_only, **options):
    from harness import runner, studies
    from harness.data import DataFormatError
    from harness.storage import StorageError

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress bars say what Optuna's info lines would
    try:
        spec = studies.load(study).with_options(
            dataset=options["dataset"], data_path=options["data_path"], seeds=options["seeds"],
            epochs=options["epochs"], trials=options["trials"], preset=options["preset"], quick=options["quick"],
        )  # fmt: skip
        run_options = runner.RunOptions(
            device=options["device"], workers=options["workers"], storage=options["storage"],
            tracking_uri=options["tracking_uri"], tune_only=tune_only,
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
    from harness.storage import redact

    if outcome.finished:
        import pandas as pd

        table = pd.DataFrame(outcome.finished)
        summary = table.groupby(["variant", "setting"])["test_micro_f1"].agg(["mean", "std", "count"])
        print(f"\nStudy {outcome.study}: test micro-F1 over seeds\n{summary.round(4).to_string()}")
    for unit in outcome.failed:
        print(f"FAILED {unit['variant']} seed {unit['seed']} ({unit['setting']}): {unit['reason']}", file=sys.stderr)
    uri = f" --tracking-uri {redact(options.tracking_uri)}" if options.tracking_uri else ""
    print(
        f"\nRuns are in MLflow experiment {outcome.experiment!r}.\n"
        f"  browse:  invoke ui{uri}\n"
        f"  report:  invoke report --study {outcome.study}{uri}   (writes reports/build/index.html)"
    )


@task(help=RUN_HELP)
def ablate(c, study="no_shuffle", dataset=None, data_path=None, seeds=None, epochs=None, trials=None,
           preset=None, device="cpu", workers=1, storage=None, tracking_uri=None, quick=False):  # fmt: skip
    """Run a study: tuning (if it has a search space) then seeded repeats, tracked in MLflow."""
    _run_study(study, tune_only=False, **_options(locals()))


@task(help=RUN_HELP)
def tune(c, study="tune", dataset=None, data_path=None, seeds=None, epochs=None, trials=None,
         preset=None, device="cpu", workers=1, storage=None, tracking_uri=None, quick=False):  # fmt: skip
    """Run only the Optuna search of a study (pruned on validation micro-F1)."""
    _run_study(study, tune_only=True, **_options(locals()))


def _options(values: dict) -> dict:
    keep = ("dataset", "data_path", "seeds", "epochs", "trials", "preset", "device", "workers", "storage",
            "tracking_uri", "quick")  # fmt: skip
    out = {k: values[k] for k in keep}
    for key in ("seeds", "epochs", "trials", "workers"):  # invoke passes option values as given
        if out[key] is not None:
            try:
                out[key] = int(out[key])
            except ValueError:
                raise Exit(f"error: --{key} must be a whole number, got {out[key]!r}", code=2) from None
    return out


@task
def variants(c):
    """List every registered model (CARAT variants and baselines) with its one-line description."""
    import models

    width = max(len(n) for n in models.list())
    for name in models.list():
        print(f"{name:<{width}}  {models.describe(name)}")


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
}


@task(help=REPORT_HELP, iterable=["study"])
def report(c, study=None, tracking_uri=None, storage=None, out=None):
    """Write tables (Markdown, LaTeX, CSV), significance tests and figures of finished studies to one index.html."""
    from pathlib import Path

    import reports
    from harness.storage import StorageError

    names = [name.strip() for value in study or [] for name in value.split(",") if name.strip()]
    out_dir = Path(out) if out else reports.DEFAULT_OUT
    try:
        summary = reports.generate(names or None, tracking_uri=tracking_uri, storage=storage, out_dir=out_dir)
    except (reports.ReportError, StorageError) as exc:
        raise Exit(f"error: {exc}", code=2)
    for name, info in summary.items():
        missing = sum(len(seeds) for seeds in info["missing"].values())
        print(f"{name:<20} {info['status']}: {info['n_finished']} finished repeat runs, "
              f"{info['n_failed']} failed, {missing} expected run(s) missing")  # fmt: skip
    print(out_dir / "index.html")


BENCH_HELP = {
    "only": "run just this case, here in this process (e.g. carat-step); default: every case, each in a fresh process",
    "preset": "model preset of the step cases (default paper)",
    "batch": "batch size (default 64)",
    "steps": "timed steps per case, after one warm-up (default 5)",
    "threads": "torch CPU threads (default 2)",
    "precision": "fp32 (default), bf16 (autocast) or auto (bf16 where the CPU has native bf16, else fp32)",
    "json": "print one JSON object per case instead of a table (the files are written either way)",
    "studies": "also time the default no_shuffle study with 1 and 2 workers (default on; --no-studies skips)",
    "out": "folder for bench.md and bench.json (default runs/bench; not written with --only)",
}


@task(help=BENCH_HELP)
def bench(c, only=None, preset="paper", batch=None, steps=None, threads=None, precision="fp32", json=False,
          studies=True, out=None):  # fmt: skip
    """Benchmark training-step time, peak memory, FLOPs and fraction of matmul peak (and whole-study wall time)."""
    import json as json_lib
    import platform
    from datetime import date
    from pathlib import Path

    import pandas as pd
    import torch

    from harness import bench as benchmarks
    from harness.precision import native_bf16, resolve_precision
    from harness.storage import RUNS_DIR

    # The counts default to None, not to numbers: invoke would otherwise convert a value itself and fail
    # with a traceback on a non-numeric one.
    counts = {}
    for key, value, default in (("batch", batch, 64), ("steps", steps, 5), ("threads", threads, 2)):
        try:
            counts[key] = default if value is None else int(value)
        except ValueError:
            raise Exit(f"error: --{key} must be a whole number, got {value!r}", code=2) from None
    batch, steps, threads = counts["batch"], counts["steps"], counts["threads"]
    try:
        if resolve_precision(precision, "cpu") == torch.bfloat16 and not native_bf16("cpu"):
            print("note: this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated, far slower than "
                  "fp32; --precision auto picks fp32 here", file=sys.stderr)  # fmt: skip
        if only:
            results = [benchmarks.run_case(only, preset, batch, steps, threads, isolate=False, precision=precision)]
        else:
            print(f"bench matmul peaks ({threads} threads) ...", file=sys.stderr, flush=True)
            peaks = benchmarks.matmul_peaks(threads, isolate=True)
            plan = [("carat-step", "small")] + [(name, preset) for name in benchmarks.case_names()]
            results = []
            for name, case_preset in plan:
                print(f"bench {name} ({case_preset}) ...", file=sys.stderr, flush=True)
                results.append(benchmarks.run_case(name, case_preset, batch, steps, threads, precision=precision,
                                                   peaks=peaks))  # fmt: skip
            if studies:
                for workers in (1, 2):
                    print(f"bench study no_shuffle, {workers} worker(s) ...", file=sys.stderr, flush=True)
                    results.append(benchmarks.time_study("no_shuffle", workers))
    except (ValueError, RuntimeError) as exc:
        raise Exit(f"error: {exc}", code=2)
    table = pd.DataFrame(results).drop(columns=["torch"], errors="ignore")
    if json:
        for result in results:
            print(json_lib.dumps(result))
    else:
        print(table.to_string(index=False))
    if only:
        return
    folder = Path(out) if out else RUNS_DIR / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}"
    command = f"invoke bench --preset {preset} --batch {batch} --steps {steps} --threads {threads} --precision {precision}"
    peak_line = ", ".join(f"{name} {value} GFLOP/s" for name, value in peaks.items())
    header = f"Measured {date.today()} on {machine} with `{command}`; matmul peak at {threads} threads: {peak_line}\n\n"
    report = {"machine": machine, "command": command, "matmul_peak_gflops": peaks, "results": results}
    (folder / "bench.json").write_text(json_lib.dumps(report, indent=1))
    (folder / "bench.md").write_text(header + _markdown_table(table))
    print(f"wrote {folder / 'bench.md'} and {folder / 'bench.json'}", file=sys.stderr if json else sys.stdout)


def _markdown_table(frame) -> str:
    frame = frame.convert_dtypes()  # integer columns stay integers beside the missing cells
    cells = frame.astype(object).where(frame.notna(), "")
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"
