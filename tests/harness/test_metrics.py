import numpy as np
import pytest
from sklearn import metrics as skm

from harness.metrics import (
    DEFAULT_THRESHOLD_GRID,
    LOWER_IS_BETTER,
    METRIC_NAMES,
    METRIC_TITLES,
    higher_is_better,
    is_constant_predictor,
    metrics_from_predictions,
    multilabel_metrics,
    per_label_f1,
    score_spread,
    tune_thresholds,
)


@pytest.fixture
def random_case():
    rng = np.random.default_rng(3)
    y = (rng.random((80, 5)) < 0.3).astype(np.float32)
    y[:, 4] = 0  # a label that is never true: exercises the zero-division conventions
    scores = np.clip(0.5 * y + 0.6 * rng.random(y.shape), 0, 1)
    return y, scores


def test_all_metric_names_present(random_case):
    assert set(multilabel_metrics(*random_case)) == set(METRIC_NAMES)


@pytest.mark.parametrize("threshold", [0.25, 0.5, 0.7])
def test_matches_sklearn(random_case, threshold):
    y, scores = random_case
    pred = (scores > threshold).astype(int)
    got = multilabel_metrics(y, scores, threshold)
    for avg in ("micro", "macro"):
        assert got[f"{avg}_precision"] == pytest.approx(skm.precision_score(y, pred, average=avg, zero_division=0))
        assert got[f"{avg}_recall"] == pytest.approx(skm.recall_score(y, pred, average=avg, zero_division=0))
        assert got[f"{avg}_f1"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0))
    assert got["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred))
    assert got["subset_acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["example_f1"] == pytest.approx(skm.f1_score(y, pred, average="samples", zero_division=0))
    assert got["acc"] == pytest.approx(skm.jaccard_score(y, pred, average="samples", zero_division=0))
    np.testing.assert_allclose(per_label_f1(y, scores, threshold), skm.f1_score(y, pred, average=None, zero_division=0))


def test_example_based_accuracy_is_sklearns_samples_jaccard_with_empty_rows():
    rng = np.random.default_rng(21)
    y = (rng.random((200, 6)) < 0.2).astype(int)
    pred = (rng.random((200, 6)) < 0.25).astype(int)
    y[:20] = 0
    pred[:10] = 0  # rows 0-9: no true and no predicted label (0 here and in sklearn with zero_division=0)
    got = metrics_from_predictions(y, pred)
    assert got["acc"] == pytest.approx(skm.jaccard_score(y, pred, average="samples", zero_division=0), rel=1e-12)
    assert got["acc"] != pytest.approx(skm.jaccard_score(y, pred, average="samples", zero_division=1))


def test_direction_and_titles_cover_every_metric():
    assert set(METRIC_TITLES) == set(METRIC_NAMES)
    assert LOWER_IS_BETTER == {"hamming_loss"}  # the only loss among the metrics computed above
    assert [m for m in METRIC_NAMES if not higher_is_better(m)] == ["hamming_loss"]
    assert higher_is_better("test_micro_f1") and not higher_is_better("valid_hamming_loss")


def test_threshold_is_strict_and_per_label():
    y = np.array([[1, 1]])
    scores = np.array([[0.25, 0.6]])
    assert per_label_f1(y, scores, 0.25).tolist() == [0.0, 1.0]
    assert per_label_f1(y, scores, np.array([0.2, 0.7])).tolist() == [1.0, 0.0]


def test_jaccard_and_example_f1_by_hand():
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]])
    p = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]])
    got = metrics_from_predictions(y, p)
    # Jaccard per sample: 1/3, empty-vs-empty 0 (not 1), 1, 0.
    assert got["acc"] == pytest.approx((1 / 3 + 0 + 1 + 0) / 4)
    # Example F1 per sample: 2*1/(2+2), 0 by convention, 1, 0.
    assert got["example_f1"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert got["example_f1"] == pytest.approx(skm.f1_score(y, p, average="samples", zero_division=0))
    assert got["subset_acc"] == pytest.approx(2 / 4)
    assert got["hamming_loss"] == pytest.approx(5 / 12)


def test_swapping_truth_and_prediction_swaps_precision_and_recall():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    p = np.array([[1, 0, 0], [1, 1, 1], [0, 1, 1]])
    forward, swapped = metrics_from_predictions(y, p), metrics_from_predictions(p, y)
    # tp=4, predicted=6, true=5
    assert forward["micro_precision"] == pytest.approx(4 / 6)
    assert forward["micro_recall"] == pytest.approx(4 / 5)
    assert forward["micro_precision"] != pytest.approx(forward["micro_recall"])
    assert swapped["micro_precision"] == pytest.approx(forward["micro_recall"])
    assert swapped["micro_recall"] == pytest.approx(forward["micro_precision"])
    assert swapped["macro_precision"] == pytest.approx(forward["macro_recall"])


def test_perfect_and_empty_predictions():
    y = np.array([[1, 0], [0, 1]])
    perfect = multilabel_metrics(y, y.astype(float), 0.5)
    assert all(perfect[k] == 1.0 for k in METRIC_NAMES if k != "hamming_loss")
    assert perfect["hamming_loss"] == 0.0
    nothing = multilabel_metrics(y, np.zeros((2, 2)), 0.5)
    assert nothing["micro_precision"] == 0.0 and nothing["micro_f1"] == 0.0 and nothing["acc"] == 0.0
    assert nothing["hamming_loss"] == 0.5


@pytest.mark.parametrize(
    "y, scores, threshold, message",
    [
        (np.ones((2, 3)), np.ones((2, 2)), 0.5, "shape"),
        (np.full((2, 2), 2), np.ones((2, 2)), 0.5, "0/1"),
        (np.ones((2, 2)), np.full((2, 2), np.nan), 0.5, "NaN"),
        (np.ones((2, 2)), np.full((2, 2), 3.0), 0.5, r"\[0, 1\]"),
        (np.ones(4), np.ones(4), 0.5, r"\(N, C\)"),
        (np.ones((2, 2)), np.ones((2, 2)), np.array([0.5, 0.5, 0.5]), "one per label"),
        (np.ones((2, 2)), np.ones((2, 2)), 1.5, "thresholds"),
    ],
)
def test_bad_input_is_refused(y, scores, threshold, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(y, scores, threshold)


def test_tune_thresholds_maximises_each_label_f1(random_case):
    y, scores = random_case
    grid = np.linspace(0.05, 0.95, 19)
    chosen = tune_thresholds(y, scores, grid)
    assert chosen.shape == (y.shape[1],)
    best_by_search = np.max([per_label_f1(y, scores, t) for t in grid], axis=0)
    np.testing.assert_allclose(per_label_f1(y, scores, chosen), best_by_search)
    # The never-true label: every threshold scores 0, so the default is kept.
    assert chosen[4] == pytest.approx(0.25)


def test_tune_thresholds_finds_the_separating_threshold():
    y = np.array([[1], [1], [0], [0]])
    scores = np.array([[0.9], [0.65], [0.6], [0.1]])
    assert tune_thresholds(y, scores, [0.3, 0.5, 0.62, 0.8]).tolist() == [0.62]
    with pytest.raises(ValueError, match="grid"):
        tune_thresholds(y, scores, [0.0, 0.5])


def test_score_spread_is_the_mean_per_label_std(random_case):
    _, scores = random_case
    assert score_spread(scores) == pytest.approx(scores.std(axis=0).mean())
    assert score_spread(np.tile([0.3, 0.1, 0.6], (50, 1))) == pytest.approx(0.0, abs=1e-12)
    assert score_spread(np.array([[0.0, 1.0], [1.0, 1.0]])) == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert score_spread(np.array([[0.2, 0.4]])) == 0.0  # one sample


def test_constant_predictor_is_flagged_and_a_learning_one_is_not(random_case):
    y, scores = random_case
    prior = np.tile(y.mean(axis=0), (len(y), 1))
    assert is_constant_predictor(prior)
    # A collapsed run: the prior plus jitter of a few thousandths (as measured on CARAT).
    jitter = np.random.default_rng(0).normal(scale=0.002, size=prior.shape)
    assert is_constant_predictor(np.clip(prior + jitter, 0, 1))
    assert not is_constant_predictor(scores)
    one_label_learnt = prior.copy()
    one_label_learnt[:, 0] = scores[:, 0]  # one label uses the input: not constant
    assert not is_constant_predictor(one_label_learnt)
    assert is_constant_predictor(one_label_learnt, tol=1.0)
    assert not is_constant_predictor(np.clip(prior + jitter, 0, 1), tol=0.0)


@pytest.mark.parametrize(
    "scores, tol, message",
    [
        (np.zeros((0, 3)), 0.01, "non-empty"),
        (np.zeros(4), 0.01, "non-empty"),
        (np.full((3, 2), np.nan), 0.01, "NaN"),
        (np.zeros((3, 2)), -1.0, "tol"),
    ],
)
def test_spread_and_constant_refuse_bad_input(scores, tol, message):
    with pytest.raises(ValueError, match=message):
        is_constant_predictor(scores, tol=tol)
    if message != "tol":
        with pytest.raises(ValueError, match=message):
            score_spread(scores)


# -- found by mutation testing (mutmut, README "Development"): each test fails on a changed line --------


def test_the_default_grid_is_the_documented_one(random_case):
    y, scores = random_case
    chosen = tune_thresholds(y, scores)
    np.testing.assert_array_equal(chosen, tune_thresholds(y, scores, DEFAULT_THRESHOLD_GRID))
    assert set(chosen) <= set(DEFAULT_THRESHOLD_GRID) and chosen.dtype == np.float64


def test_tune_thresholds_returns_float64_for_a_float32_grid():
    y = np.array([[1], [1], [0], [0]])
    scores = np.array([[0.9], [0.65], [0.6], [0.1]])
    chosen = tune_thresholds(y, scores, np.array([0.3, 0.62, 0.8], dtype=np.float32))
    assert chosen.dtype == np.float64 and chosen[0] == pytest.approx(0.62)  # thresholds are logged as float64


def test_tune_thresholds_grid_and_default_edges():
    y = np.array([[1], [0]])
    scores = np.array([[0.9], [0.1]])
    assert tune_thresholds(y, scores, [0.4]).tolist() == [0.4]  # a one-point grid is a grid
    for grid in ([], [[0.3, 0.5]], [0.5, 1.0], [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"^grid must be a non-empty 1-D sequence of values in \(0, 1\), got "):
            tune_thresholds(y, scores, grid)
    for default in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"^default must be in \(0, 1\), got {default}$"):
            tune_thresholds(y, scores, [0.5], default=default)


def test_spread_of_one_label_and_float32_scores_in_float64():
    assert score_spread(np.array([[0.0], [1.0]])) == 0.5  # one label is a matrix too
    scores32 = np.random.default_rng(2).random((64, 3)).astype(np.float32)
    assert score_spread(scores32) == np.asarray(scores32, np.float64).std(axis=0).mean()  # exact: float64 sums
    with pytest.raises(ValueError, match=r"^scores must be a non-empty \(N, C\) matrix, got shape \(3, 0\)$"):
        score_spread(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="^scores contain NaN or infinite values$"):
        score_spread(np.array([[0.1, np.inf]]))


def test_a_spread_equal_to_the_tolerance_is_constant():
    assert is_constant_predictor(np.tile([0.3, 0.6], (5, 1)), tol=0.0)  # no spread at all, no tolerance
    assert is_constant_predictor(np.array([[0.0], [1.0]]), tol=0.5)  # std exactly 0.5: "varies by more than" fails
    assert not is_constant_predictor(np.array([[0.0], [1.0]]), tol=0.49)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: metrics_from_predictions(np.ones(4), np.ones((2, 2))),
            r"y_true must be a non-empty \(N, C\) matrix, got shape \(4,\)",
        ),
        (
            lambda: metrics_from_predictions(np.ones((2, 2)), np.zeros((0, 2))),
            r"y_pred must be a non-empty \(N, C\) matrix, got shape \(0, 2\)",
        ),
        (
            lambda: metrics_from_predictions(np.full((2, 2), 0.5), np.ones((2, 2))),
            "y_true must contain only 0/1 values",
        ),
        (lambda: metrics_from_predictions(np.ones((2, 2)), np.full((2, 2), 2)), "y_pred must contain only 0/1 values"),
        (
            lambda: metrics_from_predictions(np.ones((2, 2)), np.ones((2, 3))),
            r"y_pred has shape \(2, 3\), y_true has shape \(2, 2\)",
        ),
        (
            lambda: multilabel_metrics(np.ones((2, 2)), np.ones((3, 2))),
            r"scores has shape \(3, 2\), y_true has shape \(2, 2\)",
        ),
        (lambda: multilabel_metrics(np.ones((2, 2)), np.full((2, 2), np.inf)), "scores contain NaN or infinite values"),
        (lambda: multilabel_metrics(np.full((2, 2), 0.5), np.ones((2, 2))), "y_true must contain only 0/1 values"),
        (
            lambda: multilabel_metrics(np.ones((1, 2)), [[-0.5, 0.5]]),
            r"scores must lie in \[0, 1\] \(probabilities\), got range \[-0\.5, 0\.5\]",
        ),
        (
            lambda: multilabel_metrics(np.ones((1, 2)), [[0.5, 1.25]]),
            r"scores must lie in \[0, 1\] \(probabilities\), got range \[0\.5, 1\.25\]",
        ),
        (
            lambda: multilabel_metrics(np.ones((1, 2)), np.ones((1, 2)), [0.5]),
            r"threshold must be a number or one per label \(2,\), got shape \(1,\)",
        ),
        (
            lambda: multilabel_metrics(np.ones((1, 2)), np.ones((1, 2)), 1.0),
            r"thresholds must lie in \[0, 1\), got \[1\.0, 1\.0\]",
        ),
        (
            lambda: per_label_f1(np.ones((1, 2)), np.ones((1, 2)), [0.5, -0.1]),
            r"thresholds must lie in \[0, 1\), got \[0\.5, -0\.1\]",
        ),
    ],
)
def test_bad_input_names_the_argument_and_the_problem(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


def test_threshold_zero_and_boolean_input_are_accepted():
    y = np.array([[True, False], [False, True]])
    scores = np.array([[0.1, 0.0], [0.0, 0.3]])
    assert per_label_f1(y, scores, 0.0).tolist() == [1.0, 1.0]  # a score of 0 is not above a threshold of 0
    assert metrics_from_predictions(y, y)["micro_f1"] == 1.0
    assert multilabel_metrics(y.astype(int), scores, np.array([0.0, 0.5]))["micro_recall"] == 0.5


def test_an_unknown_metric_is_refused_with_the_known_ones_listed():
    known = "acc, hamming_loss, micro_precision, micro_recall, micro_f1, macro_precision, macro_recall, macro_f1"
    with pytest.raises(ValueError, match=rf"^unknown metric 'test_loss'; known: {known}, subset_acc, example_f1$"):
        higher_is_better("test_loss")


def test_multilabel_metrics_threshold_is_strict_and_per_label_f1_defaults_to_a_quarter():
    assert multilabel_metrics(np.array([[1]]), np.array([[0.25]]), 0.25)["micro_f1"] == 0.0
    y, scores = np.array([[1, 1]]), np.array([[0.25, 0.26]])
    assert per_label_f1(y, scores).tolist() == [0.0, 1.0]


def test_tune_thresholds_predicts_strictly_above_the_grid_value():
    y, scores = np.array([[1], [0]]), np.array([[0.5], [0.1]])
    # at 0.5 nothing is predicted (0.5 is not > 0.5): only 0.3 separates, though 0.5 is nearer the default
    assert tune_thresholds(y, scores, [0.3, 0.5], default=0.45).tolist() == [0.3]


def test_a_never_true_label_keeps_the_threshold_nearest_the_default():
    y, scores = np.zeros((2, 1)), np.array([[0.1], [0.2]])
    assert tune_thresholds(y, scores, [0.05, 0.5], default=0.4).tolist() == [0.5]  # F1 0 at both: nearest wins


def test_tune_thresholds_tells_apart_f1_values_five_billionths_apart():
    # 10 000 positives at 0.9, one positive and one negative at 0.4. At 0.3: tp 10 001, fp 1 (F1 20002/20003);
    # at 0.5: tp 10 000, fn 1 (F1 20000/20001), 5e-9 lower. The higher F1 wins, not the nearer default.
    y = np.r_[np.ones(10_001), 0.0][:, None]
    scores = np.r_[np.full(10_000, 0.9), 0.4, 0.4][:, None]
    assert tune_thresholds(y, scores, [0.3, 0.5], default=0.6).tolist() == [0.3]
