"""What a reviewer reading the report alone relies on: every data set reported on its own and
compared across data sets, the configuration behind the numbers, flagged runs marked, intervals
next to the tests, notes only where they apply, statuses that cannot be missed, run ids that link.

The stores are real MLflow runs written with TrackedRun into temporary SQLite files."""

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import reports
from harness.tracking import FINAL_METRICS, TrackedRun, client_for, ensure_experiment
from harness.trainer import TrainResult
from reports import significance, tables
from reports.references import for_dataset

LABELS = ["happy", "sad", "anger"]
PROFILES = {
    "synthetic": {"n_train": 32, "n_valid": 16, "n_test": 16},
    "other": {"n_train": 50, "n_valid": 10, "n_test": 20},
}


def _result(base: float, seed: int, latents: bool) -> TrainResult:
    rng = np.random.default_rng(seed)
    n, c = 24, len(LABELS)
    return TrainResult(
        history=[{"epoch": e, "train_loss": 1.0 / e, "val_micro_f1": base - 0.1 / e} for e in (1, 2)],
        best_epoch=2,
        val_metrics={"micro_f1": base},
        test_metrics={name: round(base + 0.01 * i, 6) for i, name in enumerate(FINAL_METRICS)},
        test_per_label_f1=np.array([base, base - 0.2, base + 0.1]),
        test_scores=rng.random((n, c)).astype(np.float32),
        test_labels=(rng.random((n, c)) > 0.5).astype(np.float32),
        thresholds=np.full(c, 0.25),
        train_seconds=0.5,
        n_parameters=100,
        latents=rng.normal(size=(n, 2, c, 4)).astype(np.float32) if latents else None,
    )


def log(
    client,
    uri,
    study,
    variant,
    seed,
    base,
    *,
    dataset="synthetic",
    config_hash=None,
    lr=0.003,
    degenerate=None,
    latents=False,
    experiment_tags=None,
):
    experiment = ensure_experiment(client, uri, study, tags=experiment_tags)
    tags = {
        "study": study,
        "variant": variant,
        "dataset": dataset,
        "seed": seed,
        "phase": "repeat",
        "setting": "default",
        "optuna_trial": 0,
        "optuna_study": f"{study}.repeat",
        "config_hash": config_hash or f"h-{dataset}",
        "data_fingerprint": f"fp-{dataset}",
        "code_version": "abc123",
    }
    with TrackedRun(client, experiment, f"{variant} / {dataset} / default / s{seed}", tags) as run:
        run.log_params(
            {
                "variant": variant,
                "dataset": dataset,
                "setting": "default",
                "seed": seed,
                "preset": "small",
                "data": {
                    "loader": "synthetic" if dataset == "synthetic" else "npz",
                    "data_path": None if dataset == "synthetic" else "/data/other.npz",
                    "options": {"size": "tiny"} if dataset == "synthetic" else {},
                    "label": "",
                },
                "epochs": 2,
                "batch_size": 64,
                "lr": lr,
                "optimizer": "adamw",
                "threshold": 0.25,
            }
        )
        profile = {"modalities": {"text": [5, 8], "audio": [5, 4]}, "labels": 3, **PROFILES.get(dataset, {})}
        run.log_dataset(dataset, f"digest-{dataset}", dataset, profile)
        if degenerate:
            run.set_tags({"degenerate": degenerate})
        result = _result(base, seed, latents)
        for row in result.history:
            run.log_epoch(row["epoch"], row)
        run.log_result(result, LABELS, ("text", "audio"), {"study": study}, keep_latents=True)
    return run.run_id


BASES = {  # (data set, variant) -> score base per seed; carat wins on synthetic, no_shuffle on other
    ("synthetic", "carat"): lambda s: 0.60 + 0.01 * s,
    ("synthetic", "no_shuffle"): lambda s: 0.50 + 0.013 * s,
    ("synthetic", "prior"): lambda s: 0.30,
    ("other", "carat"): lambda s: 0.55 + 0.01 * s,
    ("other", "no_shuffle"): lambda s: 0.65 + 0.02 * s,
    ("other", "prior"): lambda s: 0.35,
}


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """Study 'pair' on two data sets (carat, no_shuffle, prior; seeds 1-3; no_shuffle's seed 1
    missing on 'other'), no_shuffle's seed 3 on synthetic flagged, lr differing for prior."""
    root = tmp_path_factory.mktemp("pair")
    uri = f"sqlite:///{root}/mlflow.db"
    client = client_for(uri)
    tags = {"planned_variants": "carat no_shuffle prior", "planned_seeds": "1 2 3"}
    for (dataset, variant), base in BASES.items():
        for seed in (1, 2, 3):
            if (dataset, variant, seed) == ("other", "no_shuffle", 1):
                continue
            reason = (
                "constant predictor (test scores vary by at most 0.0000 across samples)"
                if (dataset, variant, seed) == ("synthetic", "no_shuffle", 3)
                else None
            )
            log(
                client,
                uri,
                "pair",
                variant,
                seed,
                base(seed),
                dataset=dataset,
                lr=0.1 if variant == "prior" else 0.003,
                degenerate=reason,
                latents=variant != "prior",
                experiment_tags=tags,
            )
    out = root / "build"
    summary = reports.generate(["pair"], tracking_uri=uri, out_dir=out, ui_url="http://127.0.0.1:5000/")
    return {
        "root": root,
        "uri": uri,
        "client": client,
        "out": out,
        "summary": summary,
        "page": (out / "index.html").read_text(),
    }


# -- several data sets ---------------------------------------------------------------------------


def test_each_data_set_has_its_own_files_and_the_study_folder_the_ranks(two_datasets):
    out = two_datasets["out"] / "pair"
    for dataset in ("synthetic", "other"):
        for name in (
            "results.md",
            "results.tex",
            "results.csv",
            "configuration.md",
            "significance.md",
            "significance.csv",
            "metrics.png",
            "per_label_f1.png",
            "latents_tsne.png",
        ):
            assert (out / dataset / name).is_file(), f"{dataset}/{name}"
    assert not (out / "results.md").exists()  # no study-level results table mixing data sets
    for name in (
        "ranks.md",
        "ranks.csv",
        "ranks_pairwise.csv",
        "critical_difference.png",
        "critical_difference_wilcoxon.png",
    ):
        assert (out / name).is_file(), name
    synthetic = pd.read_csv(out / "synthetic" / "results.csv").set_index("variant")
    assert synthetic.loc["carat", "micro_f1_mean"] == pytest.approx(
        np.mean([BASES["synthetic", "carat"](s) + 0.01 * FINAL_METRICS.index("micro_f1") for s in (1, 2, 3)])
    )
    other = pd.read_csv(out / "other" / "results.csv").set_index("variant")
    assert other.loc["no_shuffle", "n_seeds"] == 2


def test_ranks_are_computed_from_the_means_over_seeds(two_datasets):
    table = pd.read_csv(two_datasets["out"] / "pair" / "ranks.csv")
    micro = table[table["metric"] == "micro_f1"].set_index("variant")
    # synthetic: carat 1, no_shuffle 2, prior 3; other: no_shuffle 1, carat 2, prior 3
    assert micro["average_rank"].to_dict() == {"carat": 1.5, "no_shuffle": 1.5, "prior": 3.0}
    assert set(table["metric"]) == {key for key, _, _ in tables.COLUMNS}
    hl = table[table["metric"] == "hamming_loss"].set_index("variant")
    assert hl.loc["prior", "average_rank"] == 1.0  # lower is better: the lowest scores rank first
    assert not hl["higher_is_better"].any()


def test_page_has_a_section_per_data_set_and_the_verdict(two_datasets):
    page = two_datasets["page"]
    assert page.count('<section class="dataset"') == 2
    assert "Data set: synthetic" in page and "Data set: other" in page
    assert "Across data sets" in page and 'src="pair/critical_difference.png"' in page
    assert 'src="pair/critical_difference_wilcoxon.png"' in page
    assert "Friedman" in page and "Iman-Davenport" in page and "Pairwise Wilcoxon-Holm" in page
    assert "Only 2 data sets" in page  # ranks' own caveat is shown
    for png in sorted((two_datasets["out"] / "pair").rglob("*.png")):
        assert f'src="{png.relative_to(two_datasets["out"]).as_posix()}"' in page


def test_a_data_set_missing_a_variant_is_left_out_of_the_ranks_and_said(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    for seed in (1, 2):
        for dataset in ("synthetic", "other", "third"):
            log(client, uri, "gap", "carat", seed, 0.6 + 0.01 * seed, dataset=dataset)
            if dataset != "third":
                log(client, uri, "gap", "no_shuffle", seed, 0.5, dataset=dataset)
    reports.generate(["gap"], tracking_uri=uri, out_dir=tmp_path / "build")
    text = (tmp_path / "build" / "gap" / "ranks.md").read_text()
    assert "Data set 'third' is left out: no score for no_shuffle." in text
    assert "Data set &#x27;third&#x27; is left out" in (tmp_path / "build" / "index.html").read_text()


def test_one_data_set_keeps_the_flat_layout_and_writes_no_ranks(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    for seed in (1, 2):
        log(client, uri, "flat", "carat", seed, 0.6 + 0.01 * seed)
        log(client, uri, "flat", "no_shuffle", seed, 0.5 + 0.02 * seed)
    reports.generate(["flat"], tracking_uri=uri, out_dir=tmp_path / "build")
    folder = tmp_path / "build" / "flat"
    assert (folder / "results.md").is_file() and not (folder / "synthetic").exists()
    assert not (folder / "ranks.md").exists()
    page = (tmp_path / "build" / "index.html").read_text()
    assert '<section class="dataset"' not in page and "Across data sets" not in page


# -- configuration ---------------------------------------------------------------------------------


def test_configuration_table_per_data_set_from_params_tags_and_dataset_input(two_datasets):
    synthetic = (two_datasets["out"] / "pair" / "synthetic" / "configuration.md").read_text()
    assert "| Samples train / valid / test | 32 / 16 / 16 |" in synthetic
    assert "| Data options | size=tiny |" in synthetic and "| Data loader | synthetic |" in synthetic
    assert "| Content fingerprint | fp-synthetic |" in synthetic and "| config_hash | h-synthetic |" in synthetic
    assert "| Code version | abc123 |" in synthetic and "| Epochs | 2 |" in synthetic
    assert "| Optimizer | adamw |" in synthetic and "| Batch size | 64 |" in synthetic
    # a field that differs between variants is given per variant
    assert "| Learning rate | 0.003 (carat, no_shuffle); 0.1 (prior) |" in synthetic
    other = (two_datasets["out"] / "pair" / "other" / "configuration.md").read_text()
    assert "| Samples train / valid / test | 50 / 10 / 20 |" in other
    assert "| Data files | /data/other.npz |" in other and "| Data loader | npz |" in other


def test_reference_rows_follow_each_data_sets_loader(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    experiment = ensure_experiment(client, uri, "refs")
    for dataset, loader in (("songs", "emotions"), ("synthetic", "synthetic")):
        for seed in (1, 2):
            tags = {
                "study": "refs",
                "variant": "carat",
                "dataset": dataset,
                "seed": seed,
                "phase": "repeat",
                "setting": "default",
                "config_hash": f"h-{dataset}",
            }
            with TrackedRun(client, experiment, f"carat {dataset} {seed}", tags) as run:
                run.log_params({"data": {"loader": loader, "data_path": None, "options": {}, "label": dataset}})
                run.log_result(_result(0.5, seed, False), LABELS, ("text",), {}, keep_latents=False)
    reports.generate(["refs"], tracking_uri=uri, out_dir=tmp_path / "build")
    assert "MEKA" in (tmp_path / "build" / "refs" / "songs" / "results.md").read_text()  # emotions loader
    assert "MEKA" not in (tmp_path / "build" / "refs" / "synthetic" / "results.md").read_text()


# -- t-SNE -------------------------------------------------------------------------------------------


def test_tsne_draws_every_variant_with_latents_at_the_lowest_common_seed(two_datasets):
    page = two_datasets["page"]
    other = page[page.index("Data set: other") :]
    caption = re.search(r"<b>t-SNE of the latents</b>([^<]*)</figcaption>", other).group(1)
    assert "Seed 2, the lowest seed every variant with latents finished" in caption  # no_shuffle lacks seed 1 there
    assert "carat " in caption and "no_shuffle " in caption and "No latents kept by: prior" in caption


def test_latent_tsne_one_column_per_variant(tmp_path):
    import matplotlib.image

    from reports import plots

    rng = np.random.default_rng(0)
    panels = {
        name: {"z": rng.normal(size=(10, 2, 3, 4)), "labels": rng.random((10, 3)) > 0.5}
        for name in ("carat", "no_shuffle", "no_contrastive")
    }
    one = plots.latent_tsne({"carat": panels["carat"]}, "one", tmp_path / "one.png")
    three = plots.latent_tsne(panels, "three", tmp_path / "three.png")
    width_one = matplotlib.image.imread(one).shape[1]
    width_three = matplotlib.image.imread(three).shape[1]
    assert width_three == pytest.approx(3 * width_one, rel=0.05)
    assert plots.latent_tsne({}, "none", tmp_path / "none.png") is None


# -- degenerate runs ---------------------------------------------------------------------------------


def test_flagged_runs_are_marked_in_the_results_table_runs_table_and_a_warning(two_datasets):
    results = (two_datasets["out"] / "pair" / "synthetic" / "results.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| no_shuffle"))
    assert "⚠ 1 of 3 runs flagged" in row
    assert "⚠ Runs flagged as no finding" in results
    unflagged = [line for line in results.splitlines() if line.startswith(("| carat", "| prior"))]
    assert len(unflagged) >= 2  # the rows exist, so the check below reads something
    assert not any("flagged" in line for line in unflagged)
    assert "⚠ Runs flagged" not in (two_datasets["out"] / "pair" / "other" / "results.md").read_text()
    page = two_datasets["page"]
    synthetic = page[page.index("Data set: synthetic") : page.index("Data set: other")]
    assert "1 run(s) flagged as no finding" in synthetic
    assert "no_shuffle, seed 3: constant predictor" in synthetic
    assert page.count("<tr class=flagged>") == 1
    flagged_row = re.search(r"<tr class=flagged>(.*?)</tr>", page).group(1)
    assert "<td>no_shuffle</td><td>3</td>" in flagged_row and "constant predictor" in flagged_row
    assert two_datasets["summary"]["pair"]["n_flagged"] == 1
    assert "1 run(s) flagged" in page[: page.index("<h2")]  # in the table of contents too
    assert "\\textbf{(!)}" in (two_datasets["out"] / "pair" / "synthetic" / "results.tex").read_text()


def test_the_prior_is_a_row_like_any_variant(two_datasets):
    table = pd.read_csv(two_datasets["out"] / "pair" / "synthetic" / "results.csv")
    assert list(table["variant"]) == ["carat", "no_shuffle", "prior"]
    assert table.set_index("variant").loc["prior", "n_flagged"] == 0
    result = pd.read_csv(two_datasets["out"] / "pair" / "synthetic" / "significance.csv")
    assert set(result["variant"]) == {"no_shuffle", "prior"}


# -- significance: intervals and constant models ------------------------------------------------------


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": v, "setting": "default", "seed": i + 1, **{f"test_{m}": x for m in FINAL_METRICS}}
            for v, xs in values.items()
            for i, x in enumerate(xs)
        ]
    )


def test_confidence_interval_of_the_paired_difference_matches_scipy():
    carat = [0.61, 0.64, 0.60, 0.66, 0.63]
    other = [0.55, 0.60, 0.57, 0.58, 0.61]
    result = significance.compare(_runs({"carat": carat, "no_shuffle": other}), ["no_shuffle"])
    row = result[result["metric"] == "micro_f1"].iloc[0]
    diff = np.subtract(other, carat)
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
    assert row["mean_diff"] == pytest.approx(diff.mean())
    assert row["p"] == pytest.approx(stats.ttest_rel(other, carat).pvalue)
    text = tables.markdown(significance.table(result))
    assert f"{diff.mean():+.4f} [{low:+.4f}, {high:+.4f}]" in text
    assert "95% t-interval" in text
    assert "Note" not in text.splitlines()[0]  # no row needs a note: no Note column


def test_a_model_constant_over_seeds_is_said_next_to_its_rows():
    result = significance.compare(
        _runs({"carat": [0.6, 0.62, 0.65], "prior": [0.3, 0.3, 0.3], "no_shuffle": [0.5, 0.55, 0.52]}),
        ["prior", "no_shuffle"],
    )
    micro = result[result["metric"] == "micro_f1"].set_index("variant")
    assert micro.loc["prior", "note"].startswith("prior gives the same result on every seed")
    assert micro.loc["no_shuffle", "note"] == ""
    lines = tables.markdown(significance.table(result)).splitlines()
    assert "Note" in lines[0]
    prior_rows = [line for line in lines if line.startswith("| prior")]
    other_rows = [line for line in lines if line.startswith("| no_shuffle")]
    assert prior_rows and other_rows  # the rows exist, so the checks below read something
    assert all("same result on every seed" in line for line in prior_rows)
    assert not any("same result" in line for line in other_rows)


def test_two_constant_models_are_not_tested():
    result = significance.compare(_runs({"carat": [0.6, 0.6, 0.6], "prior": [0.3, 0.3, 0.3]}), ["prior"])
    row = result[result["metric"] == "micro_f1"].iloc[0]
    assert np.isnan(row["p"]) and not row["significant"]  # scipy's t-test would say p = 0 here
    assert row["test"] == significance.NO_TEST_CONSTANT and row["note"].startswith("both give the same result")
    assert row["ci_low"] == pytest.approx(-0.3) and row["ci_high"] == pytest.approx(-0.3)
    text = tables.markdown(significance.table(result))
    assert "| prior | micro-F1 | -0.3000 | – | – | – |" in text


def test_significance_notes_name_only_what_was_used():
    few = significance.compare(_runs({"carat": [0.6, 0.62, 0.65], "no_shuffle": [0.5, 0.55, 0.52]}), ["no_shuffle"])
    text = " ".join(significance.table(few).notes)
    assert "paired t-test" in text and "Wilcoxon signed-rank" not in text and "Holm changes nothing" in text
    many = significance.compare(
        _runs(
            {
                "carat": list(np.linspace(0.6, 0.7, 7)),
                "no_shuffle": list(np.linspace(0.5, 0.65, 7) ** 1.1),
                "no_contrastive": list(np.linspace(0.55, 0.6, 7)),
            }
        ),
        ["no_shuffle", "no_contrastive"],
    )
    text = " ".join(significance.table(many).notes)
    assert "Wilcoxon signed-rank" in text and "paired t-test" not in text and "Holm correction across" in text


# -- bold and notes of the results table ---------------------------------------------------------------


def _summary(values: dict[str, float]) -> pd.DataFrame:
    return tables.summarise(_runs({v: [x, x] for v, x in values.items()}).assign(run_id="r"))


def _bold_rows(table) -> dict[str, int]:
    return {row[0].text: sum(c.bold for c in row) for row in table.rows}


def test_a_tie_is_not_bold_and_a_unique_best_is():
    tied = tables.results_table(_summary({"carat": 0.6, "no_shuffle": 0.6, "prior": 0.3}))
    bold = _bold_rows(tied)
    assert bold["carat"] == 0 and bold["no_shuffle"] == 0
    assert bold["prior"] == 1  # HL (lower is better) has a unique best: the prior's
    equal = tables.results_table(_summary({"carat": 0.5, "no_shuffle": 0.5}))
    assert sum(_bold_rows(equal).values()) == 0
    assert "ties are not marked" in tables.markdown(equal)
    unique = tables.results_table(_summary({"carat": 0.61, "no_shuffle": 0.6}))
    assert _bold_rows(unique)["carat"] == len(tables.COLUMNS) - 1
    # equal at the displayed precision is a tie too
    close = tables.results_table(_summary({"carat": 0.60001, "no_shuffle": 0.6}))
    assert sum(_bold_rows(close).values()) == 0


def test_reference_note_only_with_reference_rows():
    summary = _summary({"carat": 0.6, "no_shuffle": 0.5})
    plain = tables.markdown(tables.results_table(summary))
    assert "reference rows" not in plain and "†" not in plain and "Reported elsewhere" not in plain
    assert "Runs flagged" not in plain
    with_refs = tables.markdown(tables.results_table(summary, for_dataset("emotions")))
    assert "reference rows are not ranked" in with_refs and "† Reported elsewhere" in with_refs
    single = tables.markdown(tables.results_table(_summary({"carat": 0.6})))
    assert "bold" not in single  # one row: nothing is compared, nothing said about marking


# -- status, smoke tests, links, unknown studies -------------------------------------------------------


def test_partial_status_is_prominent_in_toc_and_section(two_datasets):
    page = two_datasets["page"]
    toc = page[: page.index("<h2")]
    assert two_datasets["summary"]["pair"]["status"] == "partial"
    assert '<span class="status partial">partial: 1 expected run(s) missing</span>' in toc
    section = page[page.index("<h2") :]
    assert "class='banner partial'>PARTIAL" in section[:2000]
    assert "no_shuffle on other: missing seeds 1; has 2, 3" in page


def test_smoke_test_banner_is_the_first_thing_in_its_section(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    for seed in (1, 2):
        log(client, uri, "pair.quick", "carat", seed, 0.6, experiment_tags={"quick": "true", "planned_seeds": "1 2"})
    reports.generate(None, tracking_uri=uri, out_dir=tmp_path / "build")
    page = (tmp_path / "build" / "index.html").read_text()
    section = page[page.index('<section class="study"') :]
    after_heading = section[section.index("</h2>") + len("</h2>") :]
    assert after_heading.startswith("<div class='banner smoke'>SMOKE TEST")
    assert '<span class="status smoke">smoke test</span>' in page[: page.index("<h2")]
    assert "PARTIAL" not in page and '<span class="status complete">complete</span>' in page


def test_run_ids_link_to_the_mlflow_ui(two_datasets):
    page = two_datasets["page"]
    experiment = two_datasets["client"].get_experiment_by_name("pair").experiment_id
    link = r'<a href="(http://127\.0\.0\.1:5000/#/experiments/(\d+)/runs/([0-9a-f]{32}))"><code>([0-9a-f]{32})'
    links = re.findall(link, page)
    assert len(links) == 17  # every reported run
    assert all(exp == experiment and run == shown for _, exp, run, shown in links)


def test_ui_address_from_option_or_http_tracking_uri():
    assert reports.ui_base("sqlite:///x.db") is None
    assert reports.ui_base("postgresql://u:p@db/mlflow") is None
    assert reports.ui_base("http://user:secret@mlflow.example:5000/") == "http://mlflow.example:5000"
    assert reports.ui_base("sqlite:///x.db", "https://ui.example/mlflow/") == "https://ui.example/mlflow"
    with pytest.raises(reports.ReportError, match="--ui-url"):
        reports.ui_base("sqlite:///x.db", "localhost:5000")
    assert reports.run_url("http://h:5000", "7", "abc") == "http://h:5000/#/experiments/7/runs/abc"


def test_unknown_study_is_an_error_in_strict_mode_before_anything_is_written(two_datasets, tmp_path):
    with pytest.raises(reports.UnknownStudyError, match=r"no study 'nope' .*; studies there: pair"):
        reports.generate(["nope"], tracking_uri=two_datasets["uri"], out_dir=tmp_path / "b", strict=True)
    assert not (tmp_path / "b").exists()


@pytest.mark.integration  # `invoke report` in a subprocess
def test_invoke_report_unknown_study_exits_2_naming_the_studies(two_datasets, tmp_path, repo_root):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "report",
            "--study",
            "nope",
            "--tracking-uri",
            two_datasets["uri"],
            "--out",
            str(tmp_path / "b"),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "nope" in lines[0] and "studies there: pair" in lines[0]
    assert not (tmp_path / "b").exists()


def test_summary_of_generate_is_plain_data(two_datasets):
    info = two_datasets["summary"]["pair"]
    assert info["config_hashes"] == {"synthetic": "h-synthetic", "other": "h-other"}
    json.dumps(info)  # plain data: the CLI and tests read it


def test_average_rank_table_marks_only_a_unique_best():
    from reports import rank_tables, ranks

    table = {"d1": {"a": 0.9, "b": 0.8, "c": 0.1}, "d2": {"a": 0.8, "b": 0.9, "c": 0.1}}
    scores = pd.DataFrame(
        [
            {"dataset": d, "variant": v, "micro_f1": x, "hamming_loss": x}
            for d, row in table.items()
            for v, x in row.items()
        ]
    )
    table = rank_tables.average_rank_table(ranks.verdicts(scores, [("micro_f1", True), ("hamming_loss", False)]))
    bold = {row[0].text: [c.bold for c in row[1:]] for row in table.rows}
    assert bold == {"a": [False, False], "b": [False, False], "c": [False, True]}  # a and b tie at 1.5 on micro-F1
    assert "no other variant shares it" in table.notes[0]
