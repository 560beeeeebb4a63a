"""One list of preset names, one lookup: every registered model builds under every preset, and an
unknown preset is refused with the valid names by the models, the training config and the study files."""

import dataclasses

import pytest
import torch

import models
from harness.config import TRAIN_PRESETS, TrainConfig
from harness.data.dataset import DataSpec
from harness.presets import PRESETS, preset_values
from models import carat
from models.baselines import classic, fusion, mlknn, mult, prior

ALIGNED = DataSpec({"text": (4, 5), "visual": (4, 3), "audio": (4, 2)}, ("a", "b"))
UNALIGNED = DataSpec({"text": (3, 5), "visual": (7, 3)}, ("a", "b", "c"), aligned=False)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("spec", [ALIGNED, UNALIGNED], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("name", models.list())
def test_every_model_builds_under_every_preset_with_its_values(name, spec, preset):
    model = models.create(name, spec, preset=preset)
    built = dataclasses.asdict(model.config)
    expected = _expected_values(name, preset)
    assert {k: built[k] for k in expected} == expected  # every preset value reached the model's config
    if isinstance(model, torch.nn.Module):
        width = built.get("hidden_size", built.get("d_model"))
        assert width is not None and width == expected.get("hidden_size", expected.get("d_model"))
        shapes = {d for p in model.parameters() for d in p.shape}
        assert width in shapes  # the built layers have the preset's width, not only the config


# Each model's own preset table (a CARAT variant: its switches on top of CARAT's table).
TABLES = {
    "br": classic.LOGISTIC_PRESETS,
    "lp": classic.LOGISTIC_PRESETS,
    "cc": classic.CHAIN_PRESETS,
    "knn_br": classic.KNN_PRESETS,
    "mlknn": mlknn.MLKNN_PRESETS,
    "early_fusion": fusion.FUSION_PRESETS,
    "late_fusion": fusion.FUSION_PRESETS,
    "mult": mult.MULT_PRESETS,
    "prior": prior.PRIOR_PRESETS,
}


def _expected_values(name, preset):
    if name in carat.VARIANTS:
        return {**carat.CARAT_PRESETS[preset], **carat.VARIANTS[name]}
    return dict(TABLES[name][preset])


def test_every_registered_model_has_a_preset_table_here():
    # Built-in models only: a test that runs a study in-process may have registered a plugin's.
    built_in = {name for name in models.list() if models.source(name).startswith("models.")}
    assert built_in == set(TABLES) | set(carat.VARIANTS)


@pytest.mark.parametrize("name", models.list())
def test_the_presets_build_different_models(name):
    if _expected_values(name, "paper") == _expected_values(name, "small"):
        pytest.skip(f"{name}'s presets are the same values")
    paper, small = (models.create(name, ALIGNED, preset=p) for p in ("paper", "small"))
    assert paper.config != small.config
    if isinstance(paper, torch.nn.Module):
        count = lambda m: sum(p.numel() for p in m.parameters())
        assert count(paper) > count(small)  # the paper sizes really are larger


@pytest.mark.parametrize("name", models.list())
def test_an_unknown_preset_is_refused_with_the_valid_names(name):
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*valid presets: paper, small"):
        models.create(name, ALIGNED, preset="huge")


def test_training_presets_use_the_one_list():
    assert set(TRAIN_PRESETS) == set(PRESETS)
    for preset in PRESETS:
        assert isinstance(TrainConfig.from_preset(preset), TrainConfig)
    with pytest.raises(ValueError, match=r"unknown preset 'huge' for 'training'; valid presets: paper, small"):
        TrainConfig.from_preset("huge")


def test_a_table_that_misses_or_adds_a_preset_is_refused():
    with pytest.raises(ValueError, match="must name exactly"):
        preset_values({"paper": {}}, "paper", "toy")
    with pytest.raises(ValueError, match="must name exactly"):
        preset_values({"paper": {}, "small": {}, "huge": {}}, "small", "toy")
    values = {"paper": {"k": 1}, "small": {"k": 2}}
    copy = preset_values(values, "small", "toy")
    copy["k"] = 3  # a copy: the table is never changed through it
    assert values["small"]["k"] == 2
