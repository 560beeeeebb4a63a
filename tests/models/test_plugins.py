"""Plugins: other people's models registered from files or modules, one clear error per broken plugin,
and the model contract checked before any training."""

import dataclasses
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import models
from harness.data.dataset import DataSpec
from models.plugins import PluginError, check_contract, load_plugins, module_name_for
from models.registry import REGISTRY, DuplicateNameError, Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD = '''
"""A tiny plugin model."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models import register
from models.base import LossOutput, NeuralModel, masked_mean


@dataclass(frozen=True)
class Config:
    scale: float = 1.0


class Tiny(NeuralModel):
    def __init__(self, spec, config):
        super().__init__()
        self.spec, self.config = spec, config
        self.head = nn.Linear(sum(d for _, d in spec.modalities.values()), spec.n_labels)

    def logits(self, inputs, masks):
        return self.head(torch.cat([masked_mean(inputs[m], masks[m]) for m in self.spec.modality_names], -1))

    def forward(self, inputs, masks):
        return torch.sigmoid(self.config.scale * self.logits(inputs, masks))

    def training_loss(self, inputs, masks, labels):
        bce = F.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels)
        return LossOutput(bce, {"bce": bce})


@register
def {name}(spec, preset="small", **overrides):
    """{name}: a linear head on mean-pooled features.

    More words that are not the description.
    """
    return Tiny(spec, Config(**overrides))
'''


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test sees the built-in models only and leaves no plugin behind (registry or sys.modules)."""
    monkeypatch.setattr(REGISTRY, "_entries", dict(REGISTRY._entries))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("_carat_plugin_", "plugpkg")):
            del sys.modules[name]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def good(folder: Path, file: str = "mine.py", name: str = "tiny_head") -> Path:
    return write(folder, file, GOOD.replace("{name}", name))


# -- loading -------------------------------------------------------------------------------------


def test_good_plugin_registers_its_models(tmp_path):
    path = good(tmp_path)
    assert load_plugins(["mine.py"], tmp_path) == ["tiny_head"]
    assert "tiny_head" in models.list() and "carat" in models.list()
    assert models.describe("tiny_head") == "tiny_head: a linear head on mean-pooled features."
    assert models.source("tiny_head") == str(path.resolve())
    spec = DataSpec(modalities={"a": (3, 2)}, labels=("x", "y"))
    model = models.create("tiny_head", spec, preset="small", scale=2.0)
    assert model.config.scale == 2.0
    check_contract("tiny_head")
    check_contract("tiny_head", spec)


def test_loading_the_same_file_again_is_idempotent(tmp_path):
    write(
        tmp_path,
        "counted.py",
        GOOD.replace("{name}", "counted") + "\nimport pathlib\n"
        "pathlib.Path(__file__).with_suffix('.runs').open('a').write('x')\n",
    )
    first = load_plugins(["counted.py"], tmp_path)
    again = load_plugins(["./counted.py", str(tmp_path / "sub" / ".." / "counted.py"), "counted.py"], tmp_path)
    assert first == again == ["counted"]
    assert (tmp_path / "counted.runs").read_text() == "x"  # the file ran once


def test_same_file_name_in_two_folders_does_not_collide(tmp_path):
    good(tmp_path / "one", "my_models.py", "first_model")
    good(tmp_path / "two", "my_models.py", "second_model")
    assert load_plugins(["one/my_models.py", "two/my_models.py"], tmp_path) == ["first_model", "second_model"]
    assert module_name_for((tmp_path / "one/my_models.py").resolve()) != module_name_for(
        (tmp_path / "two/my_models.py").resolve()
    )


def test_dotted_module_plugin(tmp_path, monkeypatch):
    good(tmp_path / "plugpkg", "zoo.py", "zoo_model")
    (tmp_path / "plugpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugins(["plugpkg.zoo"], Path("/nonexistent")) == ["zoo_model"]
    assert models.source("zoo_model") == "plugpkg.zoo"
    assert load_plugins(["plugpkg.zoo"], tmp_path) == ["zoo_model"]
    with pytest.raises(PluginError, match=r"plugin module 'plugpkg.nothere' not found on the Python path"):
        load_plugins(["plugpkg.nothere"], tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("import torch\ndef broken(:\n    pass\n", r"cannot be imported: SyntaxError at line 2"),
        (
            "import os\nimport no_such_module_for_plugins\n",
            r"cannot be imported: ModuleNotFoundError at line 2: No module named 'no_such_module_for_plugins'",
        ),
        (
            "x = 1\n\n\nraise RuntimeError('boom at import')\n",
            r"cannot be imported: RuntimeError at line 4: boom at import",
        ),
        ("def f():\n    return 1 / 0\n\nf()\n", r"cannot be imported: ZeroDivisionError at line 2: division by zero"),
    ],
    ids=["syntax error", "import error", "exception at import", "exception in a function"],
)
def test_plugin_that_fails_to_import_is_one_clear_error(tmp_path, text, expected):
    path = write(tmp_path, "bad.py", text)
    with pytest.raises(PluginError, match=expected) as info:
        load_plugins(["bad.py"], tmp_path)
    assert str(info.value).startswith(f"plugin {path.resolve()}")
    assert "\n" not in str(info.value)
    assert not any(name.startswith("_carat_plugin_bad") for name in sys.modules)


def test_failure_half_way_leaves_no_names_and_can_be_retried(tmp_path):
    path = write(tmp_path, "half.py", GOOD.replace("{name}", "half_model") + "\nraise ValueError('oops')\n")
    with pytest.raises(PluginError, match="ValueError at line .*: oops"):
        load_plugins(["half.py"], tmp_path)
    assert "half_model" not in models.list()
    good(tmp_path, "half.py", "half_model")  # fixed: loads now
    assert load_plugins([str(path)], tmp_path) == ["half_model"]


def test_a_builtin_name_is_refused(tmp_path):
    path = good(tmp_path, "clash.py", "carat")
    with pytest.raises(PluginError) as info:
        load_plugins(["clash.py"], tmp_path)
    assert str(info.value) == (
        f"plugin {path.resolve()}: model name 'carat' is already registered by models.carat; "
        "give the builder another name (@register(name=...))"
    )
    assert models.source("carat") == "models.carat"


def test_a_name_from_another_plugin_is_refused(tmp_path):
    first = good(tmp_path, "first.py", "shared_name")
    good(tmp_path, "second.py", "shared_name")
    load_plugins(["first.py"], tmp_path)
    expected = rf"second.py: model name 'shared_name' is already registered by {first.resolve()}"
    with pytest.raises(PluginError, match=expected):
        load_plugins(["second.py"], tmp_path)


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("missing.py", r"plugin 'missing.py': no such file .*missing.py \(plugin paths are relative to"),
        ("not a module!", "neither a .py file nor a dotted module name"),
        ("", "must be a .py file or a dotted module name"),
    ],
)
def test_bad_entries_are_refused(tmp_path, entry, expected):
    with pytest.raises(PluginError, match=expected):
        load_plugins([entry], tmp_path)


def test_a_single_string_is_not_a_list(tmp_path):
    with pytest.raises(PluginError, match="must be a list"):
        load_plugins("mine.py", tmp_path)


# -- the registry --------------------------------------------------------------------------------


def test_registry_object_and_unchanged_module_api():
    registry = Registry()

    def builder(spec, preset="small", **overrides):
        """One line.

        More."""
        return (spec, preset, overrides)

    registry.register(builder)
    registry.register(builder)  # the same function again: a module imported twice
    registry.register(name="alias")(builder)
    assert registry.list() == ["alias", "builder"]
    assert registry.describe("alias") == "One line."
    assert registry.create("builder", "spec", preset="paper", x=1) == ("spec", "paper", {"x": 1})
    assert registry.source("builder") == __name__
    with pytest.raises(DuplicateNameError, match="'builder' registered twice"):
        registry.register(name="builder")(lambda spec, preset="small": None)
    with pytest.raises(KeyError, match="unknown model 'nope'; registered: alias, builder"):
        registry.create("nope", None)
    assert models.register == REGISTRY.register and models.list == REGISTRY.list
    assert models.create("br", DataSpec(modalities={"a": (2, 3)}, labels=("x",))).config.C == 1.0


def test_recording_rolls_back_on_failure():
    registry = Registry()
    with pytest.raises(RuntimeError):
        with registry.recording("somewhere.py"):
            registry.register(name="gone")(lambda spec, preset="small": None)
            raise RuntimeError
    assert registry.list() == []


# -- the model contract --------------------------------------------------------------------------

BROKEN = {
    "logits not probabilities": (
        "return self.logits(inputs, masks) * 100",
        None,
        r"forward must return scores in \[0, 1\] \(probabilities: apply a sigmoid",
    ),
    "wrong shape": (
        "return torch.sigmoid(self.logits(inputs, masks))[:, :1]",
        None,
        r"forward returned shape \(4, 1\), expected \(batch, labels\) = \(4, 3\)",
    ),
    "loss not scalar": (
        None,
        "bce = F.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels, reduction='none')",
        r"total must be a scalar tensor \(shape \(\)\), got \(4, 3\)",
    ),
    "loss detached": (
        None,
        "bce = F.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels).detach()",
        "does not depend on the parameters",
    ),
    "loss nan": (
        None,
        "bce = F.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels) * float('nan')",
        "total is nan on a random batch",
    ),
    "forward raises": ("raise KeyError('text')", None, "forward raised KeyError: 'text'"),
}
NAIVE_MEAN = "(inputs[m] * masks[m][..., None]).sum(1) / masks[m].sum(1, keepdim=True)"


@pytest.mark.parametrize("case", BROKEN, ids=BROKEN)
def test_broken_neural_contract_is_one_clear_error(tmp_path, case):
    forward, loss, expected = BROKEN[case]
    text = GOOD.replace("{name}", "broken")
    if forward:
        text = text.replace("return torch.sigmoid(self.config.scale * self.logits(inputs, masks))", forward)
    if loss:
        text = text.replace("bce = F.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels)", loss)
    path = write(tmp_path, "broken.py", text)
    load_plugins(["broken.py"], tmp_path)  # it imports fine; the contract check finds the problem
    with pytest.raises(PluginError, match=expected) as info:
        check_contract("broken")
    assert str(info.value).startswith(f"model 'broken' ({path.resolve()}) breaks the model contract: ")


def test_a_missing_modality_must_not_give_nan(tmp_path):
    """Real data has rows whose modality is missing (mask all False): a plain mean over real steps is 0/0."""
    write(tmp_path, "naive.py", GOOD.replace("{name}", "naive").replace("masked_mean(inputs[m], masks[m])", NAIVE_MEAN))
    load_plugins(["naive.py"], tmp_path)
    with pytest.raises(PluginError, match="total is nan on a random batch"):
        check_contract("naive")


OTHER_BROKEN = {
    "not a model": ("return torch.nn.Linear(2, 2)", "returned a Linear, not a models.base.NeuralModel or ClassicModel"),
    "config not a dataclass": (
        "m = Tiny(spec, Config(**overrides)); m.config = {'a': 1}; return m",
        "`config` must be a dataclass instance .* got a dict",
    ),
    "builder raises": ("raise TypeError('needs more')", r"building it as fn\(spec, preset='small'\) raised TypeError"),
    "no parameters": (
        "m = Tiny(spec, Config(**overrides)); m.head.requires_grad_(False); return m",
        "no trainable parameters",
    ),
}


@pytest.mark.parametrize("case", OTHER_BROKEN, ids=OTHER_BROKEN)
def test_builder_that_returns_no_usable_model(tmp_path, case):
    body, expected = OTHER_BROKEN[case]
    write(tmp_path, "odd.py", GOOD.replace("{name}", "odd").replace("return Tiny(spec, Config(**overrides))", body))
    load_plugins(["odd.py"], tmp_path)
    with pytest.raises(PluginError, match=expected):
        check_contract("odd")


CLASSIC = '''
from dataclasses import dataclass
import numpy as np
from models import register
from models.base import ClassicModel

@dataclass(frozen=True)
class C:
    pass

class Prior(ClassicModel):
    def __init__(self, spec):
        self.spec, self.config = spec, C()
    def fit(self, inputs, masks, labels):
        self.prior_ = labels.mean(0)
    def predict_scores(self, inputs, masks):
        n = len(next(iter(inputs.values())))
        return {scores}

@register
def classic_one(spec, preset="small", **overrides):
    """A classic plugin model."""
    return Prior(spec)
'''


@pytest.mark.parametrize(
    "scores, expected",
    [
        ("np.tile(self.prior_, (n, 1))", None),
        (
            "np.tile(self.prior_, (n, 2))",
            r"predict_scores returned shape \(12, 6\), expected \(batch, labels\) = \(12, 3\)",
        ),
        ("np.tile(self.prior_, (n, 1)) * 3", r"scores in \[0, 1\]"),
        ("self.prior_.tolist()", "predict_scores must return a numpy array, got list"),
    ],
)
def test_classic_contract(tmp_path, scores, expected):
    write(tmp_path, "classic.py", CLASSIC.replace("{scores}", scores))
    assert load_plugins(["classic.py"], tmp_path) == ["classic_one"]
    if expected is None:
        check_contract("classic_one")
    else:
        with pytest.raises(PluginError, match=expected):
            check_contract("classic_one")


def test_every_builtin_model_meets_the_contract():
    spec = DataSpec(modalities={"text": (4, 5), "audio": (2, 3)}, labels=("a", "b"), aligned=False)
    for name in ("br", "mlknn", "early_fusion", "late_fusion", "no_shuffle"):
        check_contract(name, spec)


def test_contract_check_leaves_random_states_alone():
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    check_contract("early_fusion")
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


# -- the shipped example -------------------------------------------------------------------------


def test_example_plugin_trains_with_the_harness_trainer():
    from harness.config import TrainConfig
    from harness.data import load
    from harness.trainer import fit

    assert load_plugins(["my_models.py"], EXAMPLES) == ["mean_pool_mlp", "label_prior"]
    data = load("synthetic", size="tiny")
    for name in ("mean_pool_mlp", "label_prior"):
        check_contract(name, data.spec)
        result = fit(
            models.create(name, data.spec, preset="small"),
            data,
            TrainConfig.from_preset("small", epochs=1, progress=False),
        )
        assert 0.0 <= result.test_metrics["micro_f1"] <= 1.0
        assert result.test_scores.shape == data.splits["test"].labels.shape


def test_example_study_names_the_plugin_and_its_variants():
    from harness import studies

    path = EXAMPLES / "my_study.yaml"
    study = studies.load(path)  # loading the study loads its plugins: their models are valid variants
    assert study.plugins == (str(EXAMPLES / "my_models.py"),)
    assert study.variants == ("mean_pool_mlp", "carat") and study.seeds == (1, 2) and study.epochs == 2


NOT_A_MODEL = '''
import models


@models.register
def oops(spec, preset="small"):
    """Builds something that is no model."""
    return object()
'''


def test_a_study_with_a_broken_plugin_is_refused_naming_the_plugin(tmp_path):
    from harness import studies

    (tmp_path / "oops.py").write_text(NOT_A_MODEL)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "s", "plugins": ["oops.py"], "variants": ["oops"]}))
    with pytest.raises(studies.StudyError, match=r"s\.yaml: field 'plugins': .*oops"):
        studies.load(tmp_path / "s.yaml")


def test_editing_a_plugin_makes_a_new_configuration(tmp_path):
    from harness import studies

    source = (EXAMPLES / "my_models.py").read_text()
    copy = source.replace("mean_pool_mlp", "mean_pool_mlp_copy").replace("label_prior", "label_prior_copy")
    (tmp_path / "m.py").write_text(copy)
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump({"name": "s", "plugins": ["m.py"], "variants": ["mean_pool_mlp_copy"]})
    )
    before = studies.load(tmp_path / "s.yaml")
    (tmp_path / "m2.py").write_text(copy.replace("_copy", "_copy2") + "\n# an edit\n")
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump({"name": "s", "plugins": ["m2.py"], "variants": ["mean_pool_mlp_copy2"]})
    )
    after = studies.load(tmp_path / "s.yaml")
    assert before.plugin_digests != after.plugin_digests and before.fingerprint() != after.fingerprint()


@pytest.mark.integration  # `invoke variants` in a subprocess
def test_invoke_variants_lists_plugins_and_reports_a_broken_one(repo_root, tmp_path):
    def variants(*args):
        return subprocess.run(
            [sys.executable, "-m", "invoke", "variants", *args],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=180,
        )

    done = variants("--plugin", "examples/my_models.py", "--check")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("mean_pool_mlp"))
    assert "Mean-pool MLP" in line and f"[plugin {EXAMPLES / 'my_models.py'}]" in line
    assert "carat" in done.stdout and "model contract checked: mean_pool_mlp, label_prior" in done.stdout
    bad = write(tmp_path, "bad.py", "import no_such_module_for_plugins\n")
    done = variants("--plugin", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: plugin {bad} cannot be imported: ModuleNotFoundError at line 1: "
        "No module named 'no_such_module_for_plugins'"
    )


def test_a_plain_dict_config_is_refused_with_the_dataclass_to_write(tmp_path):
    body = "m = Tiny(spec, Config(**overrides)); m.config = {'scale': 2.0, 'depth': 3}; return m"
    write(
        tmp_path,
        "dict_cfg.py",
        GOOD.replace("{name}", "dict_cfg").replace("return Tiny(spec, Config(**overrides))", body),
    )
    load_plugins(["dict_cfg.py"], tmp_path)
    with pytest.raises(PluginError) as refused:
        check_contract("dict_cfg")
    message = str(refused.value)
    assert "got a dict {'scale': 2.0, 'depth': 3}" in message
    assert "@dataclass(frozen=True)\n    class DictCfgConfig:\n" in message
    assert "scale: float = 2.0\n" in message and "depth: int = 3" in message
    # What the message says to write is real Python that gives the same fields as the dict.
    snippet = message.split("write instead")[1].split("and set")[0]
    namespace = {}
    exec(textwrap.dedent(snippet), namespace)
    assert dataclasses.asdict(namespace["DictCfgConfig"]()) == {"scale": 2.0, "depth": 3}
