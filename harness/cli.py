"""How the command line looks: invoke's Task with the harness's conventions, and the printed summaries.

``tasks.py`` holds only the thin tasks; what they print (a study's outcome, a data set's summary)
and how their options parse (typed whole numbers, the chosen short flags) is here.
"""

from __future__ import annotations

import sys

from invoke import Argument, Task, task
from invoke.exceptions import Exit

from harness import keys

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
WHOLE_NUMBERS = ("seeds", "epochs", "trials", "workers", "port", "batch", "steps", "threads", "max_seeds")


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


def with_options(body, options, first: dict):
    """``body(c, **values)`` with the signature invoke reads its options from: ``c``, the ``first``
    options (name -> default), then one keyword per row of ``options`` (``harness.options``)."""
    import inspect

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("c", kind)]
    parameters += [inspect.Parameter(name, kind, default=default) for name, default in first.items()]
    parameters += [inspect.Parameter(o.name, kind, default=o.default) for o in options]
    body.__signature__ = inspect.Signature(parameters)
    return body


def print_outcome(outcome, tracking_uri: str | None) -> None:
    """The summary of what the tracking store holds for this study (read from MLflow)."""
    from harness.storage import redact

    print(f"\n{outcome.ran} run(s) trained by this command.")
    if outcome.finished:
        import pandas as pd

        table = pd.DataFrame(outcome.finished)
        kinds = table.get(keys.DEGENERATE_KINDS, pd.Series(index=table.index, dtype=object))
        table["flagged"] = kinds.apply(lambda kind: isinstance(kind, str))
        keys_ = ["variant", "dataset", "setting"] if table["dataset"].nunique() > 1 else ["variant", "setting"]
        summary = table.groupby(keys_, sort=False).agg(
            mean=(keys.TEST_MICRO_F1, "mean"),
            std=(keys.TEST_MICRO_F1, "std"),
            seeds=(keys.TEST_MICRO_F1, "count"),
            flagged=("flagged", "sum"),
        )
        print(
            f"\nStudy {outcome.experiment}: test micro-F1 over seeds (flagged: runs that are no finding)\n"
            f"{summary.round(4).to_string()}"
        )
        for key, rows in table[table["flagged"]].groupby(keys_, sort=False):
            seeds = ", ".join(str(s) for s in rows["seed"])
            reasons = "; ".join(dict.fromkeys(k for text in rows[keys.DEGENERATE_KINDS] for k in text.split("; ")))
            print(
                f"WARNING: {' / '.join(key)}: {len(rows)} of {int(summary.loc[key, 'seeds'])} runs are no finding "
                f"(seeds {seeds}): {reasons}",
                file=sys.stderr,
            )
    if outcome.verdicts:
        print(
            f"\nVerdicts against the reference {outcome.reference!r} (test micro-F1, paired over seeds, "
            f"equivalent within ±{outcome.equivalence_margin:g}; README: Verdicts):"
        )
        print("\n".join(f"  {line}" for line in outcome.verdicts))
    if outcome.settled:
        print(outcome.settled)
    for unit in outcome.failed:
        print(f"FAILED {unit['variant']} seed {unit['seed']} ({unit['setting']}): {unit['reason']}", file=sys.stderr)
    uri = f" --tracking-uri {redact(tracking_uri)}" if tracking_uri else ""
    print(
        f"\n{len(outcome.finished)} finished run(s) of this configuration are in MLflow experiment "
        f"{outcome.experiment!r} ({redact(outcome.tracking_uri)}).\n"
        f"  browse:  invoke ui{uri}\n"
        f"  report:  invoke report --study {outcome.experiment}{uri}   (writes reports/build/index.html)"
    )


def print_tuning_answer(outcome, study: str, values: dict) -> None:
    """What ``invoke tune`` ends with, read from the Optuna storage: per variant (and data set) the
    best trial's validation micro-F1, its parameters one per line and the trial counts; then how to
    repeat at the best, explore the trials, and where MLflow keeps the tuning runs (``study`` is
    what was passed to ``--study``, ``values`` the command's options)."""
    from harness.storage import redact
    from reports import tuning

    print(f"\n{outcome.ran} tuning trial(s) trained by this command.\n")
    if not outcome.tune_studies:
        print(f"Study {outcome.study!r} has no search_space (or --trials 0): there is nothing to tune.")
        return
    storage = values.get("storage")
    summaries = tuning.load(storage, outcome.tune_studies)
    several = len({dataset for _variant, dataset in outcome.tune_studies}) > 1
    shown_storage = redact(storage) if storage else None
    lines = tuning.answer_lines(summaries, study, several, repeat_options(values), shown_storage)
    print("\n".join(lines))
    uri = f" --tracking-uri {redact(values['tracking_uri'])}" if values.get("tracking_uri") else ""
    print(
        f"  tuning runs in MLflow experiment {outcome.experiment!r} ({redact(outcome.tracking_uri)}):\n"
        f"    browse:  invoke ui{uri}\n"
        f"    report:  invoke report --study {outcome.experiment}{uri}   (the tuning section)"
    )


def repeat_options(values: dict) -> str:
    """The options a command was given (those not at their defaults), as they would be typed again;
    the Optuna storage is left to the caller."""
    import shlex

    from harness.options import RUN_OPTIONS
    from harness.storage import redact

    given = []
    for option in RUN_OPTIONS:
        value = values.get(option.name, option.default)
        if option.name == "storage" or value == option.default:
            continue
        flag = "--" + option.name.replace("_", "-")
        if isinstance(value, bool):
            given.append(flag if value else f"--no-{flag[2:]}")
        else:
            given.append(f"{flag} {shlex.quote(redact(str(value)))}")
    return " ".join(given)


def tuning_status(info: dict) -> str:
    """``invoke report``'s line for a tune-only study (``reports.generate``'s summary of it): the
    best validation micro-F1 per variant (and data set), not repeats that were never planned."""
    found = [
        f"{where} best validation micro-F1 {t['best_value']:.4f} ({t['complete']} complete, {t['pruned']} pruned)"
        if t["best_value"] is not None
        else f"{where}: no complete trial"
        for where, t in info["tuning"].items()
    ]
    return f"tuning only: {'; '.join(found) or 'no tuning study found'}, {info['n_failed']} failed"


def print_data_summary(loaded) -> None:
    """A loaded data set as the ``invoke data`` table: modalities, then per-split sizes and label counts."""
    summary = loaded.summary()
    print(f"{summary['dataset']} ({'aligned' if loaded.aligned else 'unaligned'}) from {loaded.source}")
    print("modalities: " + ", ".join(f"{m} (T={t}, D={d})" for m, (t, d) in summary["modalities"].items()))
    labels = summary["labels"]
    widths = [max(len(name), 5) for name in labels]
    print(f"{'split':<6} {'n':>6}  " + "  ".join(f"{name:>{w}}" for name, w in zip(labels, widths)))
    for split, info in summary["splits"].items():
        counts = "  ".join(f"{count:>{w}}" for count, w in zip(info["label_counts"], widths))
        print(f"{split:<6} {info['n']:>6}  {counts}")


def loader_options(pairs: list[str]) -> dict:
    """``--option KEY=VALUE`` pairs, each value read as YAML."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Exit(f"error: --option takes KEY=VALUE, got {pair!r}", code=1)
        options[key.strip()] = yaml.safe_load(value)
    return options


def markdown_table(frame) -> str:
    frame = frame.convert_dtypes()  # integer columns stay integers beside the missing cells
    cells = frame.astype(object).where(frame.notna(), "")
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_bench_files(folder, results: list[dict], table, peaks: dict, command: str, threads: int) -> None:
    """``bench.md`` (a header naming the machine and the command, then the table) and ``bench.json``."""
    import json
    import os
    import platform
    from datetime import date

    folder.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}"
    peak_line = ", ".join(f"{name} {value} GFLOP/s" for name, value in peaks.items())
    header = f"Measured {date.today()} on {machine} with `{command}`; matmul peak at {threads} threads: {peak_line}\n\n"
    report = {"machine": machine, "command": command, "matmul_peak_gflops": peaks, "results": results}
    (folder / "bench.json").write_text(json.dumps(report, indent=1))
    (folder / "bench.md").write_text(header + markdown_table(table))


def run_benchmarks(only, preset, batch, steps, threads, precision, studies, device="cpu") -> tuple[list[dict], dict]:
    """``invoke bench``'s cases: just ``only`` here in this process, or every case in a fresh process
    (the small CARAT step first), then whole-study wall times; returns (results, matmul peaks)."""
    import torch

    from harness import bench as benchmarks
    from harness.precision import native_bf16, resolve_precision
    from models.presets import DEFAULT_PRESET

    if device == "cpu" and resolve_precision(precision, "cpu") == torch.bfloat16 and not native_bf16("cpu"):
        print(
            "note: this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated, far slower than "
            "fp32; --precision auto picks fp32 here",
            file=sys.stderr,
        )
    if only:
        case = benchmarks.run_case(
            only, preset, batch, steps, threads, isolate=False, precision=precision, device=device
        )
        return [case], {}
    print(f"bench matmul peaks ({threads} threads) ...", file=sys.stderr, flush=True)
    peaks = benchmarks.matmul_peaks(threads, isolate=True, device=device)
    results = []
    for name, case_preset in [("carat-step", DEFAULT_PRESET)] + [(name, preset) for name in benchmarks.case_names()]:
        print(f"bench {name} ({case_preset}) ...", file=sys.stderr, flush=True)
        results.append(
            benchmarks.run_case(
                name, case_preset, batch, steps, threads, precision=precision, peaks=peaks, device=device
            )
        )
    for workers in (1, 2) if studies else ():
        print(f"bench study no_shuffle, {workers} worker(s) ...", file=sys.stderr, flush=True)
        results.append(benchmarks.time_study("no_shuffle", workers))
    return results, peaks


def print_report_summary(summary: dict) -> None:
    """One line per reported study: its status and run counts (``invoke report``)."""
    for name, info in summary.items():
        if info["status"] == "tuning only":  # `invoke tune` ran it: no repeats are expected, none is missing
            print(f"{name:<20} {tuning_status(info)}")
            continue
        missing = sum(len(seeds) for seeds in info["missing"].values())
        flagged = f", {info['n_flagged']} flagged as no finding" if info["n_flagged"] else ""
        print(
            f"{name:<20} {info['status']}: {info['n_finished']} finished repeat runs{flagged}, "
            f"{info['n_failed']} failed, {missing} expected run(s) missing"
        )


def print_ui_links(uri: str, host: str, port: int) -> None:
    """Where ``invoke ui`` serves, and the links that open each study's runs ready to compare."""
    from harness.storage import redact
    from harness.tracking import client_for, view_links

    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    print(f"MLflow UI for {redact(uri)} at {address}  (Ctrl-C to stop)")
    for experiment in client_for(uri).search_experiments():
        for view, link in sorted(view_links(experiment, address).items()):
            print(f"  {experiment.name:<24} {view:<9} {link}")


def show_bench(results: list[dict], peaks: dict, as_json: bool, folder, options: dict) -> None:
    """Print the bench's cases (a table, or JSON lines) and, unless ``folder`` is None (``--only``), write
    bench.md and bench.json there with the command that reproduces them."""
    import json

    import pandas as pd

    table = pd.DataFrame(results).drop(columns=["torch"], errors="ignore")
    if as_json:
        for result in results:
            print(json.dumps(result))
    else:
        print(table.to_string(index=False))
    if folder is None:
        return
    command = "invoke bench " + " ".join(f"--{key} {value}" for key, value in options.items())
    write_bench_files(folder, results, table, peaks, command, options["threads"])
    print(f"wrote {folder / 'bench.md'} and {folder / 'bench.json'}", file=sys.stderr if as_json else sys.stdout)
