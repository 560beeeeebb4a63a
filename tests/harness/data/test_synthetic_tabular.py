"""The synthetic tabular data (T = 1 per view): shapes, and each planted effect shown real with scikit-learn."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import cross_val_predict

from harness.data import describe, load
from harness.data.synthetic_tabular import TabularConfig, generate_tabular
from harness.metrics import multilabel_metrics


@pytest.fixture(scope="module")
def default_data():
    return generate_tabular(TabularConfig())


def flat(split, views):
    return np.concatenate([split.features[v][:, 0] for v in views], axis=1)


def home_advantage(dataset, truth):
    """Per label that is not complementary: test AUC from its home view minus from the other view(s)."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    gaps = {}
    for j, label in enumerate(dataset.label_names):
        if label in truth.complementary_pairs:
            continue
        auc = {}
        for view in dataset.modalities:
            model = LogisticRegression(C=0.1, max_iter=500).fit(flat(train, [view]), train.labels[:, j])
            auc[view] = roc_auc_score(test.labels[:, j], model.predict_proba(flat(test, [view]))[:, 1])
        home = truth.home[label]
        gaps[label] = auc[home] - max(v for view, v in auc.items() if view != home)
    return gaps


def test_shapes_sizes_and_defaults(default_data):
    ds, truth = default_data
    assert ds.name == "synthetic_tabular" and ds.modalities == ("view1", "view2") and ds.aligned
    assert ds.spec.modalities == {"view1": (1, 64), "view2": (1, 16)}
    assert ds.label_names == tuple(f"y{j:02d}" for j in range(12))
    assert [s.n for s in ds.splits.values()] == [1200, 300, 5000]
    assert all(s.masks[v].all() for s in ds.splits.values() for v in ds.modalities)
    assert truth.complementary_pairs == {"y10": ("view1", "view2"), "y11": ("view2", "view1")}
    three = load("synthetic_tabular", view_dims=(20, 8, 4), n_labels=15, n_train=100, n_valid=20, n_test=30)
    assert three.spec.modalities == {"view1": (1, 20), "view2": (1, 8), "view3": (1, 4)}
    assert three.spec.n_labels == 15 and [s.n for s in three.splits.values()] == [100, 20, 30]
    assert "n_complementary" in describe()["synthetic_tabular"]["options"]
    assert "split_seed" not in describe()["synthetic_tabular"]["options"]  # it generates its own valid split


def test_seeded():
    first, again, other = (load("synthetic_tabular", seed=s, n_train=50, n_valid=10, n_test=10) for s in (0, 0, 1))
    for split in first.splits:
        np.testing.assert_array_equal(again.splits[split].features["view1"], first.splits[split].features["view1"])
        np.testing.assert_array_equal(again.splits[split].labels, first.splits[split].labels)
    assert not np.array_equal(other.splits["train"].features["view2"], first.splits["train"].features["view2"])


def test_prevalence_knob(default_data):
    ds, _ = default_data
    observed = np.concatenate([s.labels for s in ds.splits.values()]).mean(0)
    np.testing.assert_allclose(observed, np.linspace(0.4, 0.1, 12), atol=0.04)
    rare = load("synthetic_tabular", prevalence=(0.05, 0.05), n_train=2000, n_valid=10, n_test=10)
    assert abs(rare.splits["train"].labels.mean() - 0.05) < 0.01


def test_learnable_well_above_the_prior(default_data):
    ds, _ = default_data
    train, valid = ds.splits["train"], ds.splits["valid"]
    scores = np.stack(
        [
            LogisticRegression(C=0.1, max_iter=500)
            .fit(flat(train, ds.modalities), train.labels[:, j])
            .predict_proba(flat(valid, ds.modalities))[:, 1]
            for j in range(ds.spec.n_labels)
        ],
        axis=1,
    )
    prior = np.tile(train.labels.mean(0), (valid.n, 1))
    learnt = multilabel_metrics(valid.labels, scores, 0.25)["micro_f1"]
    floor = multilabel_metrics(valid.labels, prior, 0.25)["micro_f1"]
    assert learnt > floor + 0.15, (learnt, floor)  # measured: 0.70 against 0.45


def test_each_label_lives_mostly_in_its_home_view(default_data):
    focused = home_advantage(*default_data)
    assert min(focused.values()) > 0.05, focused
    spread = home_advantage(*generate_tabular(TabularConfig(specificity=0.5)))  # knob off: no preferred view
    assert np.mean(list(focused.values())) > np.mean(list(spread.values())) + 0.1


def test_label_correlation_knob(default_data):
    def mean_abs_correlation(ds):
        labels = np.concatenate([s.labels for s in ds.splits.values()])
        c = np.corrcoef(labels.T)
        return np.abs(c[~np.eye(len(c), dtype=bool)]).mean()

    correlated = mean_abs_correlation(default_data[0])
    independent = mean_abs_correlation(generate_tabular(TabularConfig(label_correlation=0.0))[0])
    assert correlated > independent + 0.07, (correlated, independent)
    assert independent < 0.05


def test_complementary_labels_need_both_views():
    ds, truth = generate_tabular(TabularConfig())
    split = ds.splits["train"]
    for label in ("y10", "y11"):
        y = split.labels[:, ds.label_names.index(label)]

        def cv_average_precision(views):
            model = LogisticRegression(C=0.1, max_iter=1000)
            scores = cross_val_predict(model, flat(split, views), y, cv=3, method="predict_proba")[:, 1]
            return average_precision_score(y, scores)

        alone = max(cv_average_precision([v]) for v in truth.complementary_pairs[label])
        together = cv_average_precision(list(truth.complementary_pairs[label]))
        assert together > alone + 0.1, (label, together, alone)
    none = generate_tabular(TabularConfig(n_complementary=0))[1]
    assert none.complementary_pairs == {}


def test_noise_knob_weakens_the_evidence():
    def home_auc(noise):
        ds, truth = generate_tabular(TabularConfig(noise=noise))
        train, test = ds.splits["train"], ds.splits["test"]
        view = truth.home["y00"]
        model = LogisticRegression(C=0.1, max_iter=500).fit(flat(train, [view]), train.labels[:, 0])
        return roc_auc_score(test.labels[:, 0], model.predict_proba(flat(test, [view]))[:, 1])

    assert home_auc(1.0) > home_auc(4.0) + 0.15


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(view_dims=(8,)), "view_dims must give 2 to 3"),
        (dict(view_dims=(8, 0)), "every view size"),
        (dict(n_labels=0), "n_labels"),
        (dict(n_complementary=13), "n_complementary"),
        (dict(specificity=1.5), "specificity"),
        (dict(prevalence=(0.5, 1.0)), "prevalence"),
        (dict(noise=0), "noise > 0"),
        (dict(n_train=1.5), "n_train"),
    ],
)
def test_bad_config_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        TabularConfig(**options)


def test_takes_no_data_path(tmp_path):
    with pytest.raises(ValueError, match="no data path"):
        load("synthetic_tabular", tmp_path)
