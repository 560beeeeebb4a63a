"""Study files: every shipped study loads; malformed ones are refused with file, field and choices."""

import pytest
import yaml

from harness import studies
from harness.studies import StudyError

SHIPPED = ["ablation", "emotions", "main", "no_contrastive", "no_reconstruction", "no_shuffle", "sensitivity", "tune"]


def test_every_required_study_is_shipped_and_valid():
    assert set(SHIPPED) <= set(studies.names())
    for name in studies.names():
        study = studies.load(name)
        assert study.name == name
        assert study.variants and study.seeds


def test_unknown_study_lists_valid_names():
    with pytest.raises(StudyError, match="unknown study 'nope'.*no_shuffle"):
        studies.load("nope")


def _write(tmp_path, **fields):
    base = {"name": "t", "variants": ["carat", "no_shuffle"], "seeds": [1, 2]}
    base.update(fields)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"colour": "red"}, r"t\.yaml: unknown field\(s\) \['colour'\]; valid fields: .*variants"),
        ({"epochs": "ten"}, r"field 'epochs': must be int or NoneType, got str"),
        ({"epochs": 0}, r"field 'epochs': must be >= 1, got 0"),
        ({"epochs": -3}, r"field 'epochs': must be >= 1"),
        ({"seeds": []}, r"field 'seeds': must list at least one seed"),
        ({"seeds": [1, 1]}, r"field 'seeds': must be distinct"),
        ({"variants": ["carat", "carrot"]}, r"field 'variants': unknown variant 'carrot'; valid: .*no_shuffle"),
        ({"variants": []}, r"field 'variants': must list at least one variant"),
        ({"preset": "huge"}, r"field 'preset': unknown preset 'huge'; valid: paper, small"),
        ({"trials": True}, r"field 'trials': must be int"),
        (
            {"search_space": {"lr": {"low": 0.1, "high": 0.01}}, "trials": 3},
            r"search_space\.lr'.*low \(0\.1\) must not exceed high",
        ),
        ({"search_space": {"lr": {"low": 0, "high": 1, "log": True}}, "trials": 3}, r"log-scaled range needs low > 0"),
        ({"search_space": {"lr": {"low": 0.1}}, "trials": 3}, r"needs both low and high"),
        ({"search_space": {"lr": {"low": 0.1, "high": 1, "step": 2}}, "trials": 3}, r"unknown key\(s\) \['step'\]"),
        ({"search_space": {"lr": {"low": 0.1, "high": 1}}}, r"field 'trials': a search space needs a trial budget"),
        ({"variant_overrides": {"mult": {"d": 3}}}, r"variant 'mult' is not in this study's variants"),
        ({"sweep": {"gamma_o": []}}, r"'gamma_o' must map to a non-empty list"),
    ],
)
def test_malformed_study_is_refused_naming_file_and_field(tmp_path, fields, expected):
    path = _write(tmp_path, **fields)
    with pytest.raises(StudyError, match=expected) as info:
        studies.load(path)
    assert str(path) in str(info.value)


def test_study_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- carat\n- no_shuffle\n")
    with pytest.raises(StudyError, match="must be a mapping"):
        studies.load(path)


def test_yaml_scientific_notation_is_read_as_a_number(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; a researcher writing it means a number.
    path = _write(tmp_path, search_space={"lr": {"low": "1e-4", "high": "1e-2", "log": True}}, trials=2)
    study = studies.load(path)
    assert study.search_space[0].low == pytest.approx(1e-4)
    assert study.search_space[0].kind == "float"


def test_options_override_the_file_and_quick_shrinks_the_work():
    study = studies.load("sensitivity")
    quick = study.with_options(quick=True)
    assert quick.epochs == 1 and quick.datasets[0].options["size"] == "tiny"
    assert len(quick.seeds) == 2 and all(len(v) <= 2 for v in quick.sweep.values())
    assert study.with_options(seeds=1).seeds == study.seeds[:1]
    with pytest.raises(StudyError, match="--seeds must be >= 1"):
        study.with_options(seeds=0)
    with pytest.raises(StudyError, match="--epochs must be >= 1"):
        study.with_options(epochs=0)


def test_explicit_options_win_over_quick_and_quick_has_its_own_experiment():
    study = studies.load("no_shuffle")
    quick = study.with_options(quick=True, seeds=3, epochs=2)
    assert quick.seeds == (1, 2, 3) and quick.epochs == 2
    assert quick.experiment == "no_shuffle.quick" and study.experiment == "no_shuffle"


def test_seeds_beyond_the_study_file_extend_it_deterministically():
    study = studies.load("no_shuffle")  # seeds 1..5
    assert study.with_options(seeds=7).seeds == (1, 2, 3, 4, 5, 6, 7)
    gappy = studies.from_dict({"name": "g", "variants": ["carat"], "seeds": [3, 10]})
    assert gappy.with_options(seeds=4).seeds == (3, 10, 11, 12)


def test_fingerprint_ignores_seeds_and_budget_but_not_results_relevant_fields():
    study = studies.load("no_shuffle")
    assert study.fingerprint() == study.with_options(seeds=2, trials=5).fingerprint()
    assert study.fingerprint() != study.with_options(epochs=3).fingerprint()
    assert study.fingerprint() != study.with_options(quick=True).fingerprint()


def test_the_data_is_part_of_a_configuration():
    study = studies.load("no_shuffle")
    name = study.datasets[0].name
    assert study.config_hash(name, "aaaa") == study.config_hash(name, "aaaa")
    assert study.config_hash(name, "aaaa") != study.config_hash(name, "bbbb")  # changed content
    other = study.with_options(quick=True)  # tiny data: other loader options
    assert other.config_hash(name, "aaaa") != study.config_hash(name, "aaaa")


def test_a_study_may_name_several_data_sets(tmp_path):
    path = _write(
        tmp_path,
        datasets=[
            {"name": "synthetic", "options": {"size": "tiny"}},
            {"name": "synthetic", "label": "unaligned", "options": {"size": "tiny", "aligned": False}},
            {"name": "npz", "data_path": "data/my.npz"},
        ],
    )
    study = studies.load(path)
    assert [d.name for d in study.datasets] == ["synthetic", "unaligned", "npz"]
    assert study.datasets[2].data_path == str(tmp_path / "data" / "my.npz")  # relative to the study file
    assert study.with_options(dataset="unaligned").datasets == (study.datasets[1],)
    assert study.with_options(dataset="emotions").datasets[0].loader == "emotions"  # a loader instead
    with pytest.raises(StudyError, match="--data-path needs --dataset"):
        study.with_options(data_path="x.npz")
    with pytest.raises(StudyError, match="--dataset: 'nope' is neither"):
        study.with_options(dataset="nope")


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            {"dataset_options": {"colour": 1}},
            r"field 'dataset_options': unknown option\(s\) \['colour'\] for data set "
            r"'synthetic'; valid: size",
        ),
        ({"datasets": [{"name": "emotions", "options": {"k": 1}}]}, r"field 'datasets\[0\]\.options': unknown option"),
        ({"datasets": [{"name": "nope"}]}, r"field 'datasets\[0\]': unknown data set 'nope'; valid: synthetic"),
        ({"datasets": ["synthetic", "synthetic"]}, r"data set names must be unique"),
        ({"datasets": [{"nme": "synthetic"}]}, r"unknown key\(s\) \['nme'\]"),
        ({"datasets": [], "dataset": "emotions"}, r"give either 'datasets'"),
    ],
)
def test_bad_data_set_entries_are_refused_naming_file_and_field(tmp_path, fields, expected):
    path = _write(tmp_path, **fields)
    with pytest.raises(StudyError, match=expected) as info:
        studies.load(path)
    assert str(path) in str(info.value)


def test_sweep_settings_and_params():
    study = studies.load("sensitivity")
    settings = study.settings()
    assert "default" in settings and settings["gamma_o=0.1"] == {"gamma_o": 0.1}
    assert study.params_for("carat", "threshold=0.35")["threshold"] == 0.35
