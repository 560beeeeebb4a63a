"""Entry points: ``invoke --list`` shows them all, ``invoke TASK --help`` explains one.

Each task is a thin shell: parse options, call the library, print where to look.
"""

import os
import sys

from invoke import Argument, Task, task
from invoke.exceptions import Exit

from harness.presets import PRESETS  # the one list of preset names (no heavy imports)

SHORT_FLAGS = {
    "study": "s",
    "dataset": "d",
    "seeds": "n",
    "epochs": "e",
    "trials": "t",
    "workers": "w",
    "preset": "p",
    "quick": "q",
    "verbose": "v",
    "out": "o",
    "port": "p",
    "json": "j",
}
WHOLE_NUMBERS = ("seeds", "epochs", "trials", "workers", "port", "batch", "steps", "threads")


class HarnessTask(Task):
    """invoke's Task with the harness's conventions: whole-number options are typed (``--seeds=INT``
    in the help; a bad value is one clear error, exit 2, not a traceback), and the short flags are
    the ones above instead of invoke's first free letter of each name (which made ``-e`` mean
    ``--seeds``). ``-h`` stays help."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in WHOLE_NUMBERS:
            opts["kind"] = int
        if name in SHORT_FLAGS and SHORT_FLAGS[name] not in taken_names:
            opts["names"].append(SHORT_FLAGS[name])
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            if argument.kind is int:
                argument.__class__ = _WholeNumber  # invoke builds plain Arguments; only the error differs
        return arguments


class _WholeNumber(Argument):
    def set_value(self, value, cast=True):
        try:
            super().set_value(value, cast)
        except ValueError:
            raise Exit(
                f"error: --{self.name.replace('_', '-')} must be a whole number, got {value!r}", code=2
            ) from None


def harness_task(*args, **kwargs):
    """``@task`` with :class:`HarnessTask` and no automatic short flags."""
    return task(*args, klass=HarnessTask, auto_shortflags=False, **kwargs)


RUN_HELP = {
    "study": "study name (a file in studies/) or path to a study YAML",
    "dataset": "run on this data set only: one of the study's, or a loader name instead (see `invoke data --help`)",
    "data_path": "folder (or file) holding the data set's files (with one data set)",
    "seeds": "number of seeds: the study's first N, extended with further seeds beyond its list (default: all)",
    "epochs": "epochs per training run (default: the study's, else the preset's)",
    "trials": "Optuna tuning budget per variant (default: the study's)",
    "preset": f"model/training preset: {' or '.join(PRESETS)} (default: the study's; see harness/presets.py)",
    "device": "cpu (default), cuda, cuda:N or auto",
    "precision": "fp32 (reproducible on CPU), bf16 (autocast; losses, SupCon, prototypes, queue in fp32) or auto "
    "(bf16 where the device supports it) (default: the study's, else fp32)",
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
            dataset=options["dataset"],
            data_path=options["data_path"],
            seeds=options["seeds"],
            epochs=options["epochs"],
            trials=options["trials"],
            preset=options["preset"],
            quick=options["quick"],
            precision=options["precision"],
        )
        run_options = runner.RunOptions(
            device=options["device"],
            workers=options["workers"],
            storage=options["storage"],
            tracking_uri=options["tracking_uri"],
            tune_only=tune_only,
            checkpoint_dir=options["checkpoint_dir"],
            keep_checkpoints=options["keep_checkpoints"],
            verbose=options["verbose"],
        )
        outcome = runner.run(spec, run_options)
    except (studies.StudyError, StorageError, DataFormatError, FileNotFoundError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
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
            lambda reason: isinstance(reason, str)
        )
        keys = ["variant", "dataset", "setting"] if table["dataset"].nunique() > 1 else ["variant", "setting"]
        summary = table.groupby(keys, sort=False).agg(
            mean=("test_micro_f1", "mean"),
            std=("test_micro_f1", "std"),
            seeds=("test_micro_f1", "count"),
            flagged=("flagged", "sum"),
        )
        print(
            f"\nStudy {outcome.experiment}: test micro-F1 over seeds (flagged: runs that are no finding)\n"
            f"{summary.round(4).to_string()}"
        )
        for key, rows in table[table["flagged"]].groupby(keys, sort=False):
            seeds = ", ".join(str(s) for s in rows["seed"])
            reasons = "; ".join(
                dict.fromkeys(r.split(" (")[0] for text in rows["degenerate"] for r in text.split("; "))
            )
            print(
                f"WARNING: {' / '.join(key)}: {len(rows)} of {int(summary.loc[key, 'seeds'])} runs are no finding "
                f"(seeds {seeds}): {reasons}",
                file=sys.stderr,
            )
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


@harness_task(help=RUN_HELP)
def ablate(
    c,
    study="no_shuffle",
    dataset=None,
    data_path=None,
    seeds=None,
    epochs=None,
    trials=None,
    preset=None,
    device="cpu",
    precision=None,
    workers=1,
    storage=None,
    tracking_uri=None,
    quick=False,
    keep_checkpoints=False,
    checkpoint_dir=None,
    verbose=False,
):
    """Run a study: tuning (if it has a search space) then seeded repeats, tracked in MLflow."""
    _run_study(study, tune_only=False, **_options(locals()))


@harness_task(help=RUN_HELP)
def tune(
    c,
    study="tune",
    dataset=None,
    data_path=None,
    seeds=None,
    epochs=None,
    trials=None,
    preset=None,
    device="cpu",
    precision=None,
    workers=1,
    storage=None,
    tracking_uri=None,
    quick=False,
    keep_checkpoints=False,
    checkpoint_dir=None,
    verbose=False,
):
    """Run only the Optuna search of a study (pruned on validation micro-F1)."""
    _run_study(study, tune_only=True, **_options(locals()))


def _options(values: dict) -> dict:
    keep = (
        "dataset",
        "data_path",
        "seeds",
        "epochs",
        "trials",
        "preset",
        "device",
        "precision",
        "workers",
        "storage",
        "tracking_uri",
        "quick",
        "keep_checkpoints",
        "checkpoint_dir",
        "verbose",
    )
    return {k: values[k] for k in keep}


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
    from pathlib import Path

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


@harness_task(
    help={
        "tracking_uri": "MLflow store (default runs/mlflow.db)",
        "host": "interface to bind (default 127.0.0.1: this machine only)",
        "port": "port (default 5000)",
    }
)
def ui(c, tracking_uri=None, host="127.0.0.1", port=5000):
    """Start the MLflow UI on the study store, with links that open each study ready to compare."""
    from harness.storage import prepare_tracking, redact
    from harness.tracking import client_for, view_links

    uri = prepare_tracking(tracking_uri)
    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    print(f"MLflow UI for {redact(uri)} at {address}  (Ctrl-C to stop)")
    for experiment in client_for(uri).search_experiments():
        for view, link in sorted(view_links(experiment, address).items()):
            print(f"  {experiment.name:<24} {view:<9} {link}")
    # The URI travels in the environment, not the command line, so a password never shows in `ps`.
    c.run(f"mlflow server --host {host} --port {port} --workers 1", env={"MLFLOW_BACKEND_STORE_URI": uri}, pty=False)


@harness_task(
    help={
        "storage": "Optuna storage: a journal file or postgresql://... (default runs/optuna.journal)",
        "host": "interface to bind (default 127.0.0.1: this machine only)",
        "port": "port (default 8080)",
    }
)
def dashboard(c, storage=None, host="127.0.0.1", port=8080):
    """Start optuna-dashboard on the studies' Optuna storage: tuning histories, importances, trials."""
    from optuna_dashboard import run_server

    from harness.storage import DEFAULT_STORAGE, StorageError, open_optuna_storage, redact

    try:
        backend = open_optuna_storage(storage)
    except StorageError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    print(f"optuna-dashboard for {redact(storage or DEFAULT_STORAGE)} at http://{host}:{port}  (Ctrl-C to stop)")
    run_server(backend, host=host, port=port)


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

    try:
        loaded = datasets.load(dataset, data_path=data_path, **_loader_options(option or []))
    except (datasets.DataFormatError, FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise Exit(f"error: {exc}", code=1) from None
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


@harness_task(help=REPORT_HELP, iterable=["study"])
def report(c, study=None, tracking_uri=None, storage=None, out=None, ui_url=None):
    """Write tables (Markdown, LaTeX, CSV), significance tests and figures of finished studies to one index.html."""
    from pathlib import Path

    import reports
    from harness.storage import StorageError

    names = [name.strip() for value in study or [] for name in value.split(",") if name.strip()]
    out_dir = Path(out) if out else reports.DEFAULT_OUT
    try:
        summary = reports.generate(
            names or None, tracking_uri=tracking_uri, storage=storage, out_dir=out_dir, ui_url=ui_url, strict=True
        )
    except (reports.ReportError, StorageError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
    for name, info in summary.items():
        missing = sum(len(seeds) for seeds in info["missing"].values())
        flagged = f", {info['n_flagged']} flagged as no finding" if info["n_flagged"] else ""
        print(
            f"{name:<20} {info['status']}: {info['n_finished']} finished repeat runs{flagged}, "
            f"{info['n_failed']} failed, {missing} expected run(s) missing"
        )
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
    import json as json_lib
    import platform
    from datetime import date
    from pathlib import Path

    import pandas as pd
    import torch

    from harness import bench as benchmarks
    from harness.precision import native_bf16, resolve_precision
    from harness.storage import RUNS_DIR

    try:
        if device == "cpu" and resolve_precision(precision, "cpu") == torch.bfloat16 and not native_bf16("cpu"):
            print(
                "note: this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated, far slower than "
                "fp32; --precision auto picks fp32 here",
                file=sys.stderr,
            )
        if only:
            results = [
                benchmarks.run_case(
                    only, preset, batch, steps, threads, isolate=False, precision=precision, device=device
                )
            ]
        else:
            print(f"bench matmul peaks ({threads} threads) ...", file=sys.stderr, flush=True)
            peaks = benchmarks.matmul_peaks(threads, isolate=True, device=device)
            plan = [("carat-step", "small")] + [(name, preset) for name in benchmarks.case_names()]
            results = []
            for name, case_preset in plan:
                print(f"bench {name} ({case_preset}) ...", file=sys.stderr, flush=True)
                results.append(
                    benchmarks.run_case(
                        name, case_preset, batch, steps, threads, precision=precision, peaks=peaks, device=device
                    )
                )
            if studies:
                for workers in (1, 2):
                    print(f"bench study no_shuffle, {workers} worker(s) ...", file=sys.stderr, flush=True)
                    results.append(benchmarks.time_study("no_shuffle", workers))
    except (ValueError, RuntimeError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
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
    command = (
        f"invoke bench --preset {preset} --batch {batch} --steps {steps} --threads {threads} --precision {precision}"
        f" --device {device}"
    )
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
