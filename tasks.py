"""Entry points: ``invoke --list`` shows them all, ``invoke TASK --help`` explains one.

Each task is a thin shell: parse options, call the library, print where to look. The run options
of ``ablate`` and ``tune`` are the rows of ``harness.options.RUN_OPTIONS``; how options parse and
what the tasks print is ``harness.cli``.
"""

import os
import sys
from pathlib import Path

from invoke.exceptions import Exit

from harness.cli import harness_task, with_options
from harness.options import RUN_HELP, RUN_OPTIONS  # the one table of run options (no heavy imports)


def _run_study(c, study, tune_only, **values):
    from harness import run, studies
    from harness.cli import print_outcome, print_tuning_answer
    from harness.data import DataFormatError
    from harness.options import RunOptions, split
    from harness.run.settle import run_study
    from harness.storage import StorageError

    study_values, run_values = split(values)
    run.quiet_libraries(run_values["verbose"])  # the command sets the libraries' log levels
    try:
        spec = studies.load(study).with_options(**study_values)
        run_options = RunOptions(tune_only=tune_only, **run_values)
        outcome = run_study(spec, run_options)  # once, or in rounds with --until-settled
    except (studies.StudyError, StorageError, DataFormatError, FileNotFoundError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
    except run.StudyStopped as stopped:
        raise Exit(str(stopped), code=stopped.code) from None
    if tune_only:
        print_tuning_answer(outcome, study, values)
    else:
        print_outcome(outcome, run_options.tracking_uri)
    if not outcome.ok:
        raise Exit(
            f"{len(outcome.failed)} run(s) failed and {len(outcome.missing)} are missing; "
            "run the same command again to retry them.",
            code=1,
        )


def _ablate(c, study, **values):
    """Run a study: tuning (if it has a search space) then seeded repeats, tracked in MLflow."""
    _run_study(c, study, tune_only=False, **values)


def _tune(c, study, **values):
    """Run only the Optuna search of a study (pruned on validation micro-F1)."""
    _run_study(c, study, tune_only=True, **values)


STUDY_HELP = {"study": "study name (a file in studies/) or path to a study YAML"}
ablate = harness_task(name="ablate", help={**STUDY_HELP, **RUN_HELP})(
    with_options(_ablate, RUN_OPTIONS, {"study": "no_shuffle"})
)
tune = harness_task(name="tune", help={**STUDY_HELP, **RUN_HELP})(with_options(_tune, RUN_OPTIONS, {"study": "tune"}))


@harness_task(
    iterable=["plugin"],
    help={
        "plugin": "a plugin .py file (relative to the current folder) or dotted module whose models are listed too; "
        "repeatable",
        "check": "also build each plugin model on tiny data and check the model contract "
        "(README: Bring your own model)",
    },
)
def variants(c, plugin=None, check=False):
    """List every registered model (CARAT variants, baselines, plugins) with its one-line description."""
    import models

    try:
        added = models.load_plugins(plugin or [], base_dir=Path.cwd())
        for name in added if check else []:
            models.check_contract(name)
    except models.PluginError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    width = max(len(n) for n in models.list())
    for name in models.list():
        origin = f"  [plugin {models.source(name)}]" if name in added else ""
        print(f"{name:<{width}}  {models.describe(name)}{origin}")
    if check and added:
        print(f"\nmodel contract checked: {', '.join(added)}")


@harness_task(name="studies")
def list_studies(c):
    """List the shipped studies with their variants."""
    from harness import studies

    for name in studies.names():
        study = studies.load(name)
        print(f"{name:<18} {', '.join(study.variants)}\n{'':<18} {study.description}")


def _server_help(store: str, help_text: str, port: int) -> dict:
    """The help of a task that serves a store: the store option, then where it listens."""
    bind = "interface to bind (default 127.0.0.1: this machine only)"
    return {store: help_text, "host": bind, "port": f"port (default {port})"}


@harness_task(help=_server_help("tracking_uri", "MLflow store (default runs/mlflow.db)", 5000))
def ui(c, tracking_uri=None, host="127.0.0.1", port=5000):
    """Start the MLflow UI on the study store, with links that open each study ready to compare."""
    from harness.cli import print_ui_links
    from harness.storage import prepare_tracking

    uri = prepare_tracking(tracking_uri)
    print_ui_links(uri, host, port)
    # The URI travels in the environment, not the command line, so a password never shows in `ps`.
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1"]
    _serve(command, env={"MLFLOW_BACKEND_STORE_URI": uri})


def _serve(command: list[str], env: dict) -> None:
    """A server in its own process group, stopped with all its children by SIGTERM, SIGHUP or Ctrl-C."""
    from harness.processes import serve

    code = serve(command, env=env)
    if code:
        raise Exit(code=code)


@harness_task(
    help=_server_help(
        "storage", "Optuna storage: a journal file or postgresql://... (default runs/optuna.journal)", 8080
    )
)
def dashboard(c, storage=None, host="127.0.0.1", port=8080):
    """Start optuna-dashboard on the studies' Optuna storage: tuning histories, importances, trials."""
    from harness.dashboard import STORAGE_VARIABLE
    from harness.storage import DEFAULT_STORAGE, StorageError, open_optuna_storage, redact

    try:
        open_optuna_storage(storage)  # a bad storage is one line here, not a traceback from the server
    except StorageError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    print(f"optuna-dashboard for {redact(storage or DEFAULT_STORAGE)} at http://{host}:{port}  (Ctrl-C to stop)")
    here = str(Path(__file__).resolve().parent)  # the server imports harness wherever invoke runs from
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    env = {STORAGE_VARIABLE: storage or "", "PYTHONPATH": path}
    _serve([sys.executable, "-m", "harness.dashboard", host, str(port)], env=env)


DATA_HELP = {
    "dataset": "synthetic (default), mosei_aligned, mosei_unaligned, m3ed, emotions, arff or npz",
    "data_path": "folder holding the data set's public files, or the file itself (synthetic takes none)",
    "option": "loader option KEY=VALUE, repeatable, value read as YAML (e.g. --option size=tiny)",
    "json": "print exactly one JSON object instead of the table",
}


@harness_task(help=DATA_HELP, iterable=["option"])
def data(c, dataset="synthetic", data_path=None, option=None, json=False):
    """Load a data set and summarise it: modalities (T, D), labels, per-split sizes and label counts."""
    import json as json_lib

    from harness import data as datasets
    from harness.cli import loader_options, print_data_summary

    try:
        loaded = datasets.load(dataset, data_path=data_path, **loader_options(option or []))
    except (datasets.DataFormatError, FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise Exit(f"error: {exc}", code=1) from None
    if json:
        print(json_lib.dumps(loaded.summary()))
        return
    print_data_summary(loaded)


REPORT_HELP = {
    "study": "study (MLflow experiment) to report; repeatable or comma-separated (default: every experiment)",
    "tracking_uri": "MLflow tracking URI to read (default runs/mlflow.db)",
    "storage": "Optuna storage holding the tuning studies, for importance/history plots (default runs/optuna.journal)",
    "out": "output folder (default reports/build)",
    "ui_url": "MLflow UI address run ids link to, e.g. http://127.0.0.1:5000 from `invoke ui` (default: the "
    "tracking URI when it is an http(s) server, else plain ids)",
}


@harness_task(help=REPORT_HELP, iterable=["study"])
def report(c, study=None, tracking_uri=None, storage=None, out=None, ui_url=None):
    """Write tables (Markdown, LaTeX, CSV), significance tests and figures of finished studies to one index.html."""
    import optuna

    import reports
    from harness.cli import print_report_summary
    from harness.storage import StorageError

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the command sets the libraries' log levels

    names = [name.strip() for value in study or [] for name in value.split(",") if name.strip()]
    out_dir = Path(out) if out else reports.DEFAULT_OUT
    try:
        summary = reports.generate(
            names or None, tracking_uri=tracking_uri, storage=storage, out_dir=out_dir, ui_url=ui_url, strict=True
        )
    except (reports.ReportError, StorageError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
    print_report_summary(summary)
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
    "device": "cpu (default), cuda or cuda:N: where the cases run (GPU memory is torch's peak allocation)",
}


@harness_task(help=BENCH_HELP)
def bench(
    c,
    only=None,
    preset="paper",
    batch=64,
    steps=5,
    threads=2,
    precision="fp32",
    json=False,
    studies=True,
    out=None,
    device="cpu",
):
    """Benchmark training-step time, peak memory, FLOPs and fraction of matmul peak (and whole-study wall time)."""
    from harness.cli import run_benchmarks, show_bench
    from harness.storage import RUNS_DIR

    options = dict(preset=preset, batch=batch, steps=steps, threads=threads, precision=precision, device=device)

    try:
        results, peaks = run_benchmarks(only, preset, batch, steps, threads, precision, studies, device)
    except (ValueError, RuntimeError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
    show_bench(results, peaks, json, None if only else (Path(out) if out else RUNS_DIR / "bench"), options)
