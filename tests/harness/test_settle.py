"""How a study's verdicts are judged and settled: the ``reference`` and ``equivalence_margin`` fields
(checked at load, no part of the configuration, recorded on the experiment), the verdict lines of
the command's summary, and ``--until-settled`` adding seeds in rounds under the sequential boundary."""

from __future__ import annotations

import numpy as np
import pytest

from harness import keys, runner, studies, tracking
from harness.run import settle
from harness.run.plan import experiment_tags
from harness.sequential import settle as settle_diffs
from harness.studies import StudyError

TINY = {"dataset": "synthetic", "dataset_options": {"size": "tiny", "seq_len": 8}}


def _study(variants=("carat", "no_shuffle"), seeds=(1, 2), **fields):
    return studies.from_dict(
        {"name": "judged", "variants": list(variants), "seeds": list(seeds), "epochs": 1, **TINY, **fields}
    )


def _options(tmp_path, **more):
    return runner.RunOptions(
        storage=str(tmp_path / "optuna.journal"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        progress=False,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        **more,
    )


# -- the study fields ---------------------------------------------------------------------------


def test_a_reference_that_names_no_variant_is_refused_in_one_line_naming_the_file_and_field(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nvariants: [carat, no_shuffle]\nreference: no_such_model\n")
    with pytest.raises(StudyError) as error:
        studies.load(path)
    message = str(error.value)
    assert message == f"{path}: field 'reference': 'no_such_model' is not a variant of this study (carat, no_shuffle)"
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("margin", [0, -0.01, True, ".01"])
def test_an_equivalence_margin_that_is_no_positive_number_is_refused(margin):
    with pytest.raises(StudyError, match=r"^x.yaml: field 'equivalence_margin': must be"):
        studies.from_dict({"name": "x", "variants": ["carat"], "equivalence_margin": margin}, source="x.yaml")


def test_the_reference_defaults_to_carat_else_the_first_variant_and_the_margin_to_the_verdicts_default():
    assert _study(variants=("no_shuffle", "carat")).compared_with == "carat"
    assert _study(variants=("br", "cc")).compared_with == "br"
    assert _study(variants=("br", "cc"), reference="cc").compared_with == "cc"
    assert _study().margin == 0.01
    assert _study(equivalence_margin=0.02).margin == 0.02


def test_reference_and_margin_judge_results_and_are_no_part_of_the_configuration():
    plain = _study()
    judged = _study(reference="no_shuffle", equivalence_margin=0.05)
    assert judged.fingerprint() == plain.fingerprint()
    assert judged.config_hash("synthetic", "aaaa") == plain.config_hash("synthetic", "aaaa")
    assert _study(epochs=2).config_hash("synthetic", "aaaa") != plain.config_hash("synthetic", "aaaa")  # still keyed
    tags = experiment_tags(judged)
    assert tags[keys.REFERENCE] == "no_shuffle" and tags[keys.EQUIVALENCE_MARGIN] == "0.05"
    assert experiment_tags(plain)[keys.REFERENCE] == "carat"


# -- the looks and the sequential verdicts ---------------------------------------------------------


def test_the_looks_start_at_the_study_seeds_and_add_five_up_to_the_maximum():
    assert settle.looks_for(5, 30) == (5, 10, 15, 20, 25, 30)
    assert settle.looks_for(3, 12) == (3, 8, 12)
    assert settle.looks_for(5, 5) == (5,)
    with pytest.raises(StudyError, match="--max-seeds"):
        settle.looks_for(5, 4)
    with pytest.raises(StudyError, match="at least 2 seeds"):
        settle.looks_for(1, 30)


def _finished(values: dict[str, list[float]], dataset="synthetic") -> list[dict]:
    return [
        {"variant": v, "dataset": dataset, "setting": "default", "seed": seed, keys.TEST_MICRO_F1: x}
        for v, xs in values.items()
        for seed, x in enumerate(xs, start=1)
    ]


def test_sequential_verdicts_pair_by_seed_in_the_study_order_and_are_those_of_the_boundary():
    rng = np.random.default_rng(3)
    base = rng.normal(0.5, 0.03, 10)
    values = {"carat": base, "copy": base.copy(), "degraded": base - 0.2 + rng.normal(0, 0.01, 10)}
    finished = _finished({k: list(v) for k, v in values.items()})
    seeds = tuple(range(1, 11))
    got = settle.sequential_verdicts(finished, seeds, (5, 10), 10, "carat", 0.01)
    expected, _ = settle_diffs({v: values[v] - base for v in ("copy", "degraded")}, (5, 10), 10, "micro_f1", 0.01)
    assert got == expected
    assert got["copy"].verdict == "equivalent" and got["degraded"].verdict == "worse"
    reordered = settle.sequential_verdicts(finished, seeds[::-1], (5,), 10, "carat", 0.01)  # the last 5 seeds
    assert reordered["degraded"].n_pairs == 5 and reordered["degraded"].verdict == got["degraded"].verdict


def test_several_data_sets_are_several_families_named_in_the_verdicts():
    base = [0.5, 0.52, 0.49, 0.51, 0.5]
    finished = _finished({"carat": base, "copy": base}, "a") + _finished({"carat": base, "copy": base}, "b")
    got = settle.sequential_verdicts(finished, (1, 2, 3, 4, 5), (5,), 10, "carat", 0.01)
    assert sorted(got) == ["a: copy", "b: copy"] and all(v.verdict == "equivalent" for v in got.values())


# -- through the runner, a real MLflow store ------------------------------------------------------


def test_until_settled_refuses_a_single_variant_and_tuning(tmp_path):
    with pytest.raises(StudyError, match="compares variants"):
        settle.run_study(_study(variants=("carat",)), _options(tmp_path, until_settled=True))
    with pytest.raises(StudyError, match="invoke ablate"):
        settle.run_study(_study(), _options(tmp_path, until_settled=True, tune_only=True))


@pytest.mark.slow  # tiny studies through the runner, in rounds
def test_until_settled_adds_rounds_records_its_looks_and_resumes_without_training_again(tmp_path):
    study, options = _study(), _options(tmp_path, until_settled=True, max_seeds=4)
    said = []
    outcome = settle.run_study(study, options, say=said.append)
    assert outcome.ok
    looks = [int(line.split(" at ")[1].split()[0]) for line in said]
    assert said[0].startswith("until-settled, look 1 at 2 of at most 4 seeds: no_shuffle ")
    assert looks in ([2], [2, 4])  # it stops at the first look that settles it, else at the maximum
    seeds = sorted({row["seed"] for row in outcome.finished})
    assert seeds == list(range(1, looks[-1] + 1)) and outcome.ran == 2 * looks[-1]
    assert outcome.settled.startswith("until-settled: ") and f"after {looks[-1]} seeds" in outcome.settled
    assert len(outcome.verdicts) == 1 and outcome.verdicts[0].startswith("no_shuffle vs carat, micro-F1: ")
    assert "[sequential: " in outcome.verdicts[0]
    client = tracking.client_for(options.tracking_uri)
    tags = client.get_experiment_by_name("judged").tags
    assert tags[keys.SEQUENTIAL_LOOKS] == " ".join(map(str, looks)) and tags[keys.SEQUENTIAL_MAX_SEEDS] == "4"
    assert tags[keys.REFERENCE] == "carat" and tags[keys.EQUIVALENCE_MARGIN] == "0.01"

    again = []
    resumed = settle.run_study(study, options, say=again.append)
    assert resumed.ran == 0 and again == said and resumed.verdicts == outcome.verdicts  # the same looks, from MLflow


COPY_PLUGIN = '''"""An exact copy of a registered model under another name."""

from models import create, register


@register(name="no_shuffle_copy")
def no_shuffle_copy(spec, preset="small", **overrides):
    """no_shuffle under another name: the same builder, so the same weights for the same seed."""
    return create("no_shuffle", spec, preset=preset, **overrides)
'''


@pytest.mark.slow  # a tiny study through the command, in this process
def test_the_command_prints_a_verdict_line_per_comparison_against_the_named_reference(tmp_path, capsys):
    from tests.helpers.commands import invoke_in_process

    (tmp_path / "copies.py").write_text(COPY_PLUGIN)
    path = tmp_path / "nocarat.yaml"
    path.write_text(
        "name: nocarat\nvariants: [no_shuffle, no_maxpool, no_shuffle_copy]\nplugins: [copies.py]\n"
        "dataset: synthetic\ndataset_options: {size: tiny, seq_len: 8}\nepochs: 1\nseeds: [1, 2]\n"
    )
    code, out, _ = invoke_in_process(
        capsys,
        "ablate",
        "--study",
        str(path),
        "--storage",
        str(tmp_path / "optuna.journal"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert code == 0
    assert "Verdicts against the reference 'no_shuffle' (test micro-F1" in out  # no carat: the first variant
    lines = [line.strip() for line in out.splitlines() if " vs no_shuffle, micro-F1: " in line]
    assert len(lines) == 2 and lines[0].startswith("no_maxpool vs no_shuffle, micro-F1: ")
    verdict = lines[0].split(": ", 1)[1].split(" (")[0].split()[-1]
    assert verdict in ("better", "worse", "equivalent", "inconclusive") and "(2 seeds" in lines[0]
    assert lines[1] == (
        "no_shuffle_copy vs no_shuffle, micro-F1: +0.000 equivalent "
        "(2 seeds, identical on every seed: no spread to test)"
    )
