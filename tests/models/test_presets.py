"""One list of preset names, one lookup: every registered model builds under every preset, and an
unknown preset is refused with the valid names by the models, the training config and the study files."""

import pytest

import models
from harness.config import TRAIN_PRESETS, TrainConfig
from harness.data.dataset import DataSpec
from harness.presets import PRESETS, preset_values

ALIGNED = DataSpec({"text": (4, 5), "visual": (4, 3), "audio": (4, 2)}, ("a", "b"))
UNALIGNED = DataSpec({"text": (3, 5), "visual": (7, 3)}, ("a", "b", "c"), aligned=False)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("spec", [ALIGNED, UNALIGNED], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("name", models.list())
def test_every_model_builds_under_every_preset(name, spec, preset):
    model = models.create(name, spec, preset=preset)
    assert model.config is not None


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
