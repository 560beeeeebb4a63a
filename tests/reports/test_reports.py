"""The report recomputes every number from real MLflow runs (written with TrackedRun into a
temporary SQLite store), marks what is missing or failed, and links every figure it draws."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reports
from harness.storage import open_optuna_storage
from harness.tracking import FINAL_METRICS, TrackedRun, client_for, ensure_experiment
from harness.trainer import TrainResult
from reports import significance

LABELS = ["happy", "sad", "anger"]
SEEDS = [1, 2, 3]


def _metrics(base: float) -> dict:
    """Distinct, known values per metric: base + a per-metric offset."""
    return {name: round(base + 0.01 * i, 6) for i, name in enumerate(FINAL_METRICS)}


def _result(base: float, seed: int, epochs: int = 3, latents: bool = False) -> TrainResult:
    rng = np.random.default_rng(seed)
    n, c = 20, len(LABELS)
    labels = (rng.random((n, c)) > 0.5).astype(np.float32)
    return TrainResult(
        history=[{"epoch": e, "train_loss": 1.0 / e, "val_micro_f1": base - 0.1 / e} for e in range(1, epochs + 1)],
        best_epoch=epochs,
        val_metrics={"micro_f1": base},
        test_metrics=_metrics(base),
        test_per_label_f1=np.array([base, base - 0.2, base + 0.1]),
        test_scores=rng.random((n, c)).astype(np.float32),
        test_labels=labels,
        thresholds=np.full(c, 0.25),
        train_seconds=0.5,
        n_parameters=100,
        latents=rng.normal(size=(n, 2, c, 4)).astype(np.float32) if latents else None,
    )


def _log(
    client,
    uri,
    study,
    variant,
    seed,
    base,
    *,
    setting="default",
    config_hash="new",
    phase="repeat",
    fail=None,
    params=None,
    tune_name=None,
):
    experiment = ensure_experiment(client, uri, study)
    tags = {
        "study": study,
        "variant": variant,
        "dataset": "synthetic",
        "seed": seed,
        "phase": phase,
        "setting": setting,
        "optuna_trial": 0,
        "optuna_study": tune_name or f"{study}.{config_hash}.repeat",
        "config_hash": config_hash,
    }
    with TrackedRun(client, experiment, f"{variant}-seed{seed}", tags) as run:
        run.log_params({"setting": setting, "gamma_o": 0.01, **(params or {})})
        if fail:
            run.end("FAILED", fail)
            return run.run_id
        result = _result(base, seed, latents=study == "fake" and variant == "carat")
        for row in result.history:
            run.log_epoch(row["epoch"], row)
        run.log_result(result, LABELS, ("text", "audio"), {"study": study}, keep_latents=True)
    return run.run_id


def _tuning_study(journal, name, values):
    import optuna

    study = optuna.create_study(study_name=name, storage=open_optuna_storage(str(journal)), direction="maximize")
    space = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
    }
    for i, value in enumerate(values):
        params = {"lr": 1e-4 * 3**i, "dropout": 0.1 * i}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))


def carat_base(seed):
    return 0.6 + 0.01 * seed


def no_shuffle_base(seed):
    return 0.45 + 0.013 * seed  # clearly worse than carat on every metric


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root}/mlflow.db"
    client = client_for(uri)
    for seed in SEEDS:
        _log(client, uri, "fake", "carat", seed, carat_base(seed))
        _log(client, uri, "fake", "no_shuffle", seed, no_shuffle_base(seed))
    _log(client, uri, "fake", "no_shuffle", 4, 0.0, fail="NonFiniteLossError: loss became nan at epoch 2, step 3")
    _log(client, uri, "old_first", "carat", 1, 0.9, config_hash="old")  # an older configuration: never reported
    _log(client, uri, "old_first", "carat", 1, 0.3)
    # half-finished: no_shuffle has seed 1 only
    for seed in SEEDS:
        _log(client, uri, "half", "carat", seed, carat_base(seed))
    _log(client, uri, "half", "no_shuffle", 1, no_shuffle_base(1))
    # a sensitivity sweep of gamma_o (default 0.01) after a 3-trial Optuna search
    tune_name = "sweep.new.tune.carat"
    _tuning_study(root / "optuna.journal", tune_name, values=[0.5, 0.62, 0.58])
    for _trial in range(3):
        _log(client, uri, "sweep", "carat", 1, 0.5, phase="tune", tune_name=tune_name)
    for seed in (1, 2):
        _log(client, uri, "sweep", "carat", seed, carat_base(seed))
        for value, shift in ((0.1, -0.05), (1.0, -0.2)):
            _log(
                client,
                uri,
                "sweep",
                "carat",
                seed,
                carat_base(seed) + shift,
                setting=f"gamma_o={value}",
                params={"gamma_o": value},
            )
    ensure_experiment(client, uri, "empty")
    out = root / "build"
    summary = reports.generate(None, tracking_uri=uri, storage=str(root / "optuna.journal"), out_dir=out)
    return {"root": root, "uri": uri, "client": client, "out": out, "summary": summary}


def test_results_csv_equals_mean_and_std_of_the_runs(store):
    table = pd.read_csv(store["out"] / "fake" / "results.csv")
    assert list(table["variant"]) == ["carat", "no_shuffle"]
    for variant, base in (("carat", carat_base), ("no_shuffle", no_shuffle_base)):
        row = table[table["variant"] == variant].iloc[0]
        assert row["n_seeds"] == 3 and row["seeds"] == "1 2 3"
        for metric, offset in zip(FINAL_METRICS, range(len(FINAL_METRICS))):
            values = [round(base(s) + 0.01 * offset, 6) for s in SEEDS]
            assert row[f"{metric}_mean"] == pytest.approx(np.mean(values), abs=1e-9)
            assert row[f"{metric}_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-9)


def test_results_table_marks_best_and_explains_precision_recall(store):
    text = (store["out"] / "fake" / "results.md").read_text()
    carat_row = next(line for line in text.splitlines() if line.startswith("| carat"))
    shuffle_row = next(line for line in text.splitlines() if line.startswith("| no_shuffle"))
    # carat is higher on everything, so best everywhere except HL (lower is better): no_shuffle there.
    assert carat_row.count("**") == 2 * 7
    assert shuffle_row.count("**") == 2
    assert "right way round" in text and "swap" in text
    latex = (store["out"] / "fake" / "results.tex").read_text()
    assert r"\toprule" in latex and r"\textbf{" in latex and r"no\_shuffle" in latex


def test_older_configuration_is_left_out_but_mentioned(store):
    table = pd.read_csv(store["out"] / "old_first" / "results.csv")
    assert table["micro_f1_mean"].iloc[0] == pytest.approx(0.3 + 0.01 * FINAL_METRICS.index("micro_f1"))
    assert store["summary"]["old_first"]["config_hashes"] == {"synthetic": "new"}
    assert re.search(r"older\) configurations.*old \(1 runs\)", (store["out"] / "index.html").read_text())


def test_holm_matches_hand_values():
    assert significance.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert significance.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    adjusted = significance.holm([np.nan, 0.02, 0.04])
    assert np.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.04, 0.04])


def test_significance_flags_only_the_clearly_different_variant():
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(1, 6):
        carat = 0.6 + 0.02 * rng.standard_normal()
        for variant, value in (
            ("carat", carat),
            ("no_shuffle", carat - 0.1 + 0.005 * rng.standard_normal()),
            ("no_contrastive", carat + 0.02 * rng.standard_normal()),
        ):
            rows.append(
                {"variant": variant, "setting": "default", "seed": seed, **{f"test_{m}": value for m in FINAL_METRICS}}
            )
    result = significance.compare(pd.DataFrame(rows), ["no_shuffle", "no_contrastive"])
    micro = result[result["metric"] == "micro_f1"].set_index("variant")
    assert micro.loc["no_shuffle", "significant"] and not micro.loc["no_shuffle", "better"]
    assert not micro.loc["no_contrastive", "significant"]
    assert micro.loc["no_shuffle", "test"] == "paired t-test" and micro.loc["no_shuffle", "n_pairs"] == 5
    # Holm over the two variants compared: the smaller p is doubled
    smallest = micro["p"].idxmin()
    assert micro.loc[smallest, "p_holm"] == pytest.approx(min(1.0, 2 * micro.loc[smallest, "p"]))


def test_significance_table_of_the_study(store):
    result = pd.read_csv(store["out"] / "fake" / "significance.csv")
    assert set(result["variant"]) == {"no_shuffle"} and result["significant"].all()
    micro = result[result["metric"] == "micro_f1"].iloc[0]
    assert micro["mean_diff"] == pytest.approx(np.mean([no_shuffle_base(s) - carat_base(s) for s in SEEDS]))
    assert micro["seeds"] == "1 2 3"


def test_half_finished_study_names_missing_and_present_seeds(store):
    summary = store["summary"]["half"]
    assert summary["missing"] == {"no_shuffle": [2, 3]}
    assert summary["n_finished"] == 4
    page = (store["out"] / "index.html").read_text()
    assert "no_shuffle: missing seeds 2, 3; has 1" in page


def test_study_file_seeds_are_expected(store, tmp_path):
    _log(store["client"], store["uri"], "no_contrastive", "carat", 1, 0.6)
    summary = reports.generate(["no_contrastive"], tracking_uri=store["uri"], storage=None, out_dir=tmp_path)
    # studies/no_contrastive.yaml: variants carat and no_contrastive, seeds 1-5
    assert summary["no_contrastive"]["missing"] == {"carat": [2, 3, 4, 5], "no_contrastive": [1, 2, 3, 4, 5]}


def test_failed_runs_are_listed_with_their_reason(store):
    assert store["summary"]["fake"]["n_failed"] == 1
    assert "NonFiniteLossError: loss became nan at epoch 2" in (store["out"] / "index.html").read_text()


def test_empty_experiment_is_reported_as_no_finished_runs(store):
    assert store["summary"]["empty"]["status"] == "no finished runs"
    assert store["summary"]["empty"]["n_runs"] == 0
    assert store["summary"]["empty"]["paths"] == []
    assert "Default" not in store["summary"]  # MLflow's empty default experiment is not a study


def test_unknown_study_is_reported_not_raised(store, tmp_path):
    summary = reports.generate(["nope"], tracking_uri=store["uri"], storage=None, out_dir=tmp_path)
    assert summary["nope"]["status"].startswith("no runs")
    assert (tmp_path / "index.html").exists()


def test_missing_store_is_an_error_not_a_new_database(tmp_path):
    with pytest.raises(reports.ReportError, match="no MLflow store"):
        reports.generate(None, tracking_uri=f"sqlite:///{tmp_path}/none.db", storage=None, out_dir=tmp_path)
    assert not (tmp_path / "none.db").exists()


def test_index_references_every_png(store):
    page = (store["out"] / "index.html").read_text()
    pngs = sorted(p.relative_to(store["out"]).as_posix() for p in store["out"].rglob("*.png"))
    drawn = {"metrics.png", "per_label_f1.png", "training_curves.png", "latents_tsne.png"}
    assert {f"fake/{name}" for name in drawn} <= set(pngs)
    for png in pngs:
        assert f'src="{png}"' in page
    for path in store["summary"]["fake"]["paths"]:
        assert path.endswith((".png", ".csv", ".md", ".tex")) and (store["out"] / "fake").exists()
    # run ids trace numbers back (plain ids: no MLflow UI address is known for a SQLite store)
    assert re.search(r"<td>carat</td>\s*<td>1</td>\s*<td><code>[0-9a-f]{32}</code></td>", page)
    assert "#/experiments/" not in page


def test_sweep_and_tuning_figures(store):
    written = {Path(p).name for p in store["summary"]["sweep"]["paths"]}
    assert {
        "sensitivity.png",
        "tuning_history_carat_synthetic.png",
        "tuning_importances_carat_synthetic.png",
    } <= written
    assert "latents_tsne.png" not in written  # its carat runs kept no latents: a note, not a figure
    table = pd.read_csv(store["out"] / "sweep" / "results.csv")
    assert list(table["setting"]) == ["default", "gamma_o=0.1", "gamma_o=1.0"]
    assert table["n_seeds"].tolist() == [2, 2, 2]
    assert "tune FINISHED: 3" in (store["out"] / "index.html").read_text()


def test_reference_rows_are_marked_and_never_win_a_column():
    from reports import references, tables

    ours = pd.DataFrame(
        [
            {
                "variant": "carat",
                "setting": "default",
                "seed": s,
                "run_id": f"r{s}",
                **{f"test_{m}": 0.5 + 0.01 * s for m in FINAL_METRICS},
            }
            for s in SEEDS
        ]
    )
    table = tables.results_table(tables.summarise(ours), references.for_dataset("emotions"))
    text = tables.markdown(table)
    meka = next(line for line in text.splitlines() if line.startswith("| BR, 10-NN"))
    assert "0.706" in meka and "**" not in meka and "†" in meka  # higher than ours, yet not marked best
    assert "Reported elsewhere, not re-run here: MEKA 1.9.5" in text
    assert "henrygouk/meka-metric-learning" in text
    aligned = tables.markdown(tables.results_table(tables.summarise(ours), references.for_dataset("mosei_aligned")))
    assert "0.565–0.568" in aligned and "0.475–0.484" in aligned
    unaligned = tables.html(tables.results_table(tables.summarise(ours), references.for_dataset("mosei_unaligned")))
    assert unaligned.count('class="reference"') == 3 and "0.544" in unaligned
    assert references.for_dataset("synthetic") == ()
