"""The synthetic data: MOSEI shapes, and each planted effect shown real with scikit-learn."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import cross_val_predict

from harness.data import load, synthetic
from harness.data.synthetic import (
    HOME,
    LABELS,
    MISSING,
    MODALITIES,
    NOISE_REPLACED,
    PREVALENCE,
    SyntheticConfig,
    generate,
)
from models.base import pooled_numpy


@pytest.fixture(scope="module")
def default_data():
    return generate(SyntheticConfig())


def pooled(split, modalities):
    return pooled_numpy(split.features, split.masks, modalities)


def home_advantage(dataset):
    """Per non-complementary label: test AUC from the home modality minus the best other modality."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    gaps = {}
    for j, label in enumerate(LABELS):
        if label == "surprise":
            continue
        auc = {}
        for m in MODALITIES:
            model = LogisticRegression(C=0.1, max_iter=500).fit(pooled(train, [m]), train.labels[:, j])
            auc[m] = roc_auc_score(test.labels[:, j], model.predict_proba(pooled(test, [m]))[:, 1])
        gaps[label] = auc[HOME[label]] - max(v for m, v in auc.items() if m != HOME[label])
    return gaps


def all_labels(dataset):
    return np.concatenate([s.labels for s in dataset.splits.values()])


def test_a_larger_test_split_leaves_train_and_validation_as_they_were(monkeypatch):
    """Each split has its own random stream, so the test split's size (186 before, 1000 now) changes
    nothing the models train or select on."""
    config = SyntheticConfig(size="tiny", seq_len=8)
    first = generate(config)[0]
    monkeypatch.setitem(synthetic.SPLIT_SIZES, "tiny", (32, 16, 64))
    again = generate(config)[0]
    for split in ("train", "valid"):
        np.testing.assert_array_equal(first.splits[split].labels, again.splits[split].labels)
        for m in MODALITIES:
            np.testing.assert_array_equal(first.splits[split].features[m], again.splits[split].features[m])
    assert again.splits["test"].n == 64 and first.splits["test"].n == 16


def test_mosei_shapes_and_split_sizes(default_data):
    ds, _ = default_data
    assert ds.modalities == MODALITIES and ds.label_names == LABELS and ds.aligned
    assert ds.spec.modalities == {"text": (60, 300), "visual": (60, 35), "audio": (60, 74)}
    assert [s.n for s in ds.splits.values()] == [653, 75, 1000]
    assert list(SyntheticConfig(size="full").split_sizes().values()) == [16326, 1871, 4659]
    unaligned = load("synthetic", size="tiny", aligned=False)
    assert not unaligned.aligned
    assert unaligned.spec.modalities == {"text": (50, 300), "visual": (500, 35), "audio": (500, 74)}
    assert 20 <= unaligned.splits["train"].n <= 60
    short = load("synthetic", size="tiny", aligned=False, seq_len=8)
    assert short.spec.modalities == {"text": (8, 300), "visual": (80, 35), "audio": (80, 74)}


def test_seeded():
    first, again, other = (load("synthetic", size="tiny", seed=seed) for seed in (0, 0, 1))
    for split in first.splits:
        np.testing.assert_array_equal(again.splits[split].features["audio"], first.splits[split].features["audio"])
        np.testing.assert_array_equal(again.splits[split].labels, first.splits[split].labels)
    assert not np.array_equal(other.splits["valid"].features["audio"], first.splits["valid"].features["audio"])


def test_variable_lengths_with_zero_padding(default_data):
    ds, truth = default_data
    split = ds.splits["train"]
    intact = (truth.corruption["train"] != MISSING).all(axis=1)
    lengths = split.masks["text"][intact].sum(axis=1)
    assert len(np.unique(lengths)) > 20 and lengths.min() >= 6 and (lengths == 60).any()
    for m in MODALITIES:
        assert (split.features[m][~split.masks[m]] == 0).all()
        # Real steps form a prefix: padding is at the end.
        assert (np.diff(split.masks[m].astype(int), axis=1) <= 0).all()
    # Aligned data: every intact modality of a sample has the same length.
    np.testing.assert_array_equal(split.masks["text"][intact], split.masks["audio"][intact])
    unaligned = load("synthetic", size="small", aligned=False, seq_len=10, corruption=0.0).splits["train"]
    ratio = unaligned.masks["audio"].sum(1) / unaligned.masks["text"].sum(1)
    assert 7 < np.median(ratio) < 13


def test_labels_have_mosei_like_prevalence(default_data):
    observed = all_labels(default_data[0]).mean(axis=0)
    np.testing.assert_allclose(observed, [PREVALENCE[label] for label in LABELS], atol=0.05)


def test_each_label_lives_mostly_in_its_home_modality(default_data):
    focused = home_advantage(default_data[0])
    assert min(focused.values()) > 0.1, focused
    spread = home_advantage(generate(SyntheticConfig(specificity=1 / 3))[0])  # knob off: no preferred modality
    assert np.mean(list(focused.values())) > np.mean(list(spread.values())) + 0.15


def test_label_correlation_knob(default_data):
    def mean_abs_correlation(labels):
        c = np.corrcoef(labels.T)
        return np.abs(c[~np.eye(len(c), dtype=bool)]).mean()

    correlated = mean_abs_correlation(all_labels(default_data[0]))
    independent = mean_abs_correlation(all_labels(generate(SyntheticConfig(label_correlation=0.0, seq_len=4))[0]))
    assert correlated > independent + 0.07
    assert independent < 0.08


def test_complementary_label_needs_both_modalities():
    ds, truth = generate(SyntheticConfig(corruption=0.0))
    assert truth.complementary_pairs == {"surprise": ("visual", "audio")}
    split = ds.splits["train"]
    y = split.labels[:, LABELS.index("surprise")]

    def cv_average_precision(modalities):
        model = LogisticRegression(C=0.1, max_iter=1000)
        scores = cross_val_predict(model, pooled(split, modalities), y, cv=3, method="predict_proba")[:, 1]
        return average_precision_score(y, scores)

    alone = max(cv_average_precision(["visual"]), cv_average_precision(["audio"]))
    together = cv_average_precision(["visual", "audio"])
    assert together > alone + 0.15, (together, alone)


def test_noise_knob_weakens_the_evidence():
    def home_auc(noise):
        ds = generate(SyntheticConfig(noise=noise, seq_len=30, corruption=0.0))[0]
        train, test = ds.splits["train"], ds.splits["test"]
        j = LABELS.index("anger")
        model = LogisticRegression(C=0.1, max_iter=500).fit(pooled(train, ["audio"]), train.labels[:, j])
        return roc_auc_score(test.labels[:, j], model.predict_proba(pooled(test, ["audio"]))[:, 1])

    assert home_auc(1.0) > home_auc(4.0) + 0.15


def test_evidence_is_spread_over_time(default_data):
    """The home-modality evidence shows at every early step, not only at step 0."""
    ds, _ = default_data
    split = ds.splits["train"]
    j = LABELS.index("anger")
    x, mask, y = split.features["audio"], split.masks["audio"], split.labels[:, j] == 1
    weights = LogisticRegression(C=0.1, max_iter=500).fit(pooled(split, ["audio"]), y).coef_[0]
    projection = x @ weights  # (N, T)
    steps = range(20)
    gap = [projection[y & mask[:, t], t].mean() - projection[~y & mask[:, t], t].mean() for t in steps]
    assert min(gap) > 0, gap
    assert gap[0] < 2 * np.median(gap)


@pytest.mark.parametrize("kind", ["mixed", "missing", "noise"])
def test_corruption_share_matches_the_knob(kind):
    ds, truth = generate(SyntheticConfig(corruption=0.3, corruption_kind=kind, seq_len=10))
    codes = np.concatenate([truth.corruption[s] for s in ds.splits])
    assert abs((codes != 0).mean() - 0.3) < 0.03
    assert (codes == 0).any(axis=1).all()  # every sample keeps an intact modality
    if kind == "mixed":
        assert abs((codes == MISSING).mean() - 0.15) < 0.03 and abs((codes == NOISE_REPLACED).mean() - 0.15) < 0.03
    else:
        assert set(np.unique(codes)) == {0, MISSING if kind == "missing" else NOISE_REPLACED}
    for split_name, split in ds.splits.items():
        for k, m in enumerate(MODALITIES):
            missing = truth.corruption[split_name][:, k] == MISSING
            # Missing modalities are visible in the data: no real step, all-zero features.
            np.testing.assert_array_equal(~split.masks[m].any(axis=1), missing)
            assert (split.features[m][missing] == 0).all()


def test_noise_replaced_modalities_carry_no_evidence():
    ds, truth = generate(SyntheticConfig(corruption=0.5, corruption_kind="noise", seq_len=30))
    train, test = ds.splits["train"], ds.splits["test"]
    j, k = LABELS.index("anger"), MODALITIES.index("audio")
    model = LogisticRegression(C=0.1, max_iter=500).fit(pooled(train, ["audio"]), train.labels[:, j])
    scores = model.predict_proba(pooled(test, ["audio"]))[:, 1]
    replaced = truth.corruption["test"][:, k] == NOISE_REPLACED
    auc_intact = roc_auc_score(test.labels[~replaced, j], scores[~replaced])
    auc_replaced = roc_auc_score(test.labels[replaced, j], scores[replaced])
    assert auc_intact > 0.8 and abs(auc_replaced - 0.5) < 0.15


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(size="huge"), "size must be one of"),
        (dict(specificity=1.5), "specificity"),
        (dict(corruption=1.0), "corruption"),
        (dict(complementary=("joy",)), "unknown labels"),
        (dict(corruption_kind="blur"), "corruption_kind"),
        (dict(seq_len=1), "seq_len"),
    ],
)
def test_bad_config_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**options)


def test_synthetic_takes_no_data_path(tmp_path):
    with pytest.raises(ValueError, match="no data path"):
        load("synthetic", tmp_path)
