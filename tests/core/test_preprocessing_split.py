import numpy as np
import pytest

import core
from core.data import SPLIT_STREAM, prepare_data, seed_stream
from core.preprocessing import Preprocessor, fit_preprocessor
from core.spec import Preprocessing, parse_spec
from core.split import split_indices
from tests.core.helpers import linear_regression_data


def imbalanced_labels():
    """90 samples in classes of 50, 30 and 10, interleaved."""
    return np.array([0] * 50 + [1] * 30 + [2] * 10)[np.random.default_rng(0).permutation(90)]


def spec_for(**parts):
    data = {"dataset": "test", "model": {"layers": [{"type": "dense", "units": 1}]}, **parts}
    return parse_spec(data)


# Splits --------------------------------------------------------------------------


def test_split_partitions_all_rows():
    """Train and held-out indices do not overlap and together cover every row once."""
    train, held_out = split_indices(90, 0.2, np.random.default_rng(0), imbalanced_labels())

    assert len(held_out) == 18
    assert np.intersect1d(train, held_out).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, held_out])), np.arange(90))


def test_split_stratified_keeps_proportions():
    """Each class contributes to the held-out part in proportion to its size."""
    labels = imbalanced_labels()

    _, held_out = split_indices(90, 0.2, np.random.default_rng(0), labels)

    assert np.bincount(labels[held_out], minlength=3).tolist() == [10, 6, 2]


def test_split_stratified_rounds_by_largest_remainder():
    """Places left after rounding down go to the classes with the largest remainders."""
    labels = imbalanced_labels()

    _, held_out = split_indices(90, 0.25, np.random.default_rng(0), labels)

    # round(22.5) = 22 places, with exact shares 12.22, 7.33 and 2.44. Rounding down gives
    # 12, 7 and 2, and the place left goes to class 2, whose remainder 0.44 is the largest.
    assert np.bincount(labels[held_out], minlength=3).tolist() == [12, 7, 3]


def test_split_stratified_keeps_each_class_in_training():
    """A class with two samples keeps one in training even when its share rounds up."""
    labels = np.array([0] * 18 + [1] * 2)

    train, held_out = split_indices(20, 0.5, np.random.default_rng(0), labels)

    assert set(labels[train].tolist()) == {0, 1}
    assert len(held_out) == 10


def test_split_seeded():
    """The same seed gives the same split, and another seed a different one."""
    labels = imbalanced_labels()

    first = split_indices(90, 0.2, np.random.default_rng(5), labels)
    again = split_indices(90, 0.2, np.random.default_rng(5), labels)
    other = split_indices(90, 0.2, np.random.default_rng(6), labels)

    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_split_unstratified_size():
    """Without labels the held-out part has round(fraction * n) rows, at least 1."""
    _, tiny_held_out = split_indices(10, 0.01, np.random.default_rng(0))
    _, held_out = split_indices(10, 0.35, np.random.default_rng(0))

    assert len(tiny_held_out) == 1
    assert len(held_out) == 4


def test_split_leaving_no_training_rows():
    """A split that would leave no training rows raises ValueError with the fix."""
    with pytest.raises(ValueError, match="lower the split or add samples"):
        split_indices(1, 0.5, np.random.default_rng(0))


def test_validation_split_stratified_in_training():
    """prepare_data's validation split keeps class proportions in a classification job."""
    labels = imbalanced_labels()
    x = np.random.default_rng(0).normal(size=(90, 2))
    spec = spec_for(training={"validation_split": 0.2})

    data = prepare_data(spec, x, labels, "classification")

    assert data.y_val is not None and data.y_val.labels is not None
    assert np.bincount(data.y_val.labels, minlength=3).tolist() == [10, 6, 2]
    assert len(data.y_train) == 72


# Preprocessing -------------------------------------------------------------------


def shifted_features(n_samples=40):
    """Features whose validation rows, under the spec's seeded split, lie far from the rest."""
    x, y = linear_regression_data(n_samples=n_samples)
    spec = spec_for(training={"validation_split": 0.25}, preprocessing={"standardize": True})
    _, val_rows = split_indices(n_samples, 0.25, seed_stream(0, SPLIT_STREAM))
    x[val_rows] += 100.0
    return spec, x, y, val_rows


def test_standardize_statistics_from_training_rows_only():
    """Standardization is fitted on the training split: it has mean 0 and std 1 there, and
    the shifted validation rows stay far from 0."""
    spec, x, y, val_rows = shifted_features()
    train_rows = np.setdiff1d(np.arange(len(x)), val_rows)

    data = prepare_data(spec, x, y, "regression")

    np.testing.assert_allclose(data.preprocessor.mean, x[train_rows].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(data.preprocessor.scale, x[train_rows].std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, rtol=1e-5)
    assert data.x_val is not None
    assert (data.x_val.mean(axis=0) > 10).all()


def test_standardize_constant_column():
    """A constant column gets scale 1 and becomes zeros instead of NaN."""
    x = np.column_stack([np.full(5, 3.0), np.arange(5.0)])

    preprocessor = fit_preprocessor(Preprocessing(standardize=True), x)

    assert preprocessor.scale is not None
    assert preprocessor.scale[0] == 1.0
    assert np.array_equal(preprocessor.transform(x)[:, 0], np.zeros(5))


@pytest.mark.parametrize("validation_split", [0.0, 0.5])
def test_nan_without_impute_names_row_and_column(validation_split):
    """A NaN with impute 'none' raises ValueError naming its row and column in x."""
    x, y = linear_regression_data(n_samples=20)
    x[13, 1] = np.nan
    spec = spec_for(training={"validation_split": validation_split})

    with pytest.raises(ValueError, match=r"row 13, column 1.*impute"):
        prepare_data(spec, x, y, "regression")


def test_infinite_feature_names_row_and_column():
    """An infinite feature raises ValueError naming its row and column, even with impute."""
    x, y = linear_regression_data(n_samples=20)
    x[7, 2] = -np.inf
    spec = spec_for(training={"validation_split": 0.5}, preprocessing={"impute": "mean"})

    with pytest.raises(ValueError, match="infinite value at row 7, column 2"):
        prepare_data(spec, x, y, "regression")


@pytest.mark.parametrize("impute", ["mean", "median"])
def test_impute_fills_from_training_rows(impute):
    """impute fills each missing value with its column's training mean or median."""
    x = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, np.nan], [10.0, 40.0]])
    spec = spec_for(preprocessing={"impute": impute})

    data = prepare_data(spec, x, np.arange(4.0), "regression")

    statistic = np.nanmean if impute == "mean" else np.nanmedian
    fill = statistic(x, axis=0)
    assert data.preprocessor.fill is not None
    np.testing.assert_allclose(data.preprocessor.fill, fill)
    assert data.x_train[1, 0] == pytest.approx(fill[0])
    assert data.x_train[2, 1] == pytest.approx(fill[1])
    assert not np.isnan(data.x_train).any()


def test_impute_then_train_and_predict():
    """A run with missing values and impute trains and predicts rows with NaN."""
    x, y = linear_regression_data(n_samples=40)
    x[::7, 0] = np.nan
    spec = {
        "dataset": "test",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "training": {"epochs": 2, "validation_split": 0.25},
        "preprocessing": {"impute": "median", "standardize": True},
    }

    result = core.fit(spec, x, y)

    predictions = result.model.predict(np.array([[np.nan, 0.0, 0.0]]))
    assert np.isfinite(predictions).all()
    assert all(np.isfinite(record["val_loss"]) for record in result.history)


def test_impute_column_without_values():
    """A column with no value in the training rows cannot be imputed: ValueError names it."""
    x = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])

    with pytest.raises(ValueError, match="column 1 has no values"):
        fit_preprocessor(Preprocessing(impute="mean"), x)


def test_preprocessor_arrays_round_trip():
    """to_arrays and from_arrays keep the fitted statistics."""
    x = np.array([[1.0, 2.0], [np.nan, 4.0], [5.0, 8.0]])
    preprocessor = fit_preprocessor(Preprocessing(standardize=True, impute="mean"), x)

    again = Preprocessor.from_arrays(preprocessor.to_arrays())

    assert np.array_equal(again.transform(x), preprocessor.transform(x))


def round_trip_features(spec, x):
    """Return the training and validation features computed from x converted to float64."""
    train_index, val_index = split_indices(
        len(x), spec.training.validation_split, seed_stream(spec.training.seed, SPLIT_STREAM)
    )
    x64 = np.asarray(x, dtype=np.float64)
    preprocessor = fit_preprocessor(spec.preprocessing, x64[train_index])
    dtype = np.dtype(spec.training.dtype)
    return preprocessor.transform(x64[train_index], dtype), preprocessor.transform(
        x64[val_index], dtype
    )


@pytest.mark.parametrize("input_dtype", ["float16", "float32", "float64", "int32"])
@pytest.mark.parametrize("training_dtype", ["float32", "float64"])
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("validation_split", [0.0, 0.25])
def test_features_equal_float64_round_trip(
    input_dtype, training_dtype, standardize, validation_split
):
    """Features come out bit for bit as if x had been converted to float64 first."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(40, 3)) * 50).astype(input_dtype)
    spec = spec_for(
        training={"validation_split": validation_split, "dtype": training_dtype},
        preprocessing={"standardize": standardize},
    )

    data = prepare_data(spec, x, np.arange(40.0), "regression")

    want_train, want_val = round_trip_features(spec, x)
    assert data.x_train.dtype == np.dtype(training_dtype)
    assert data.x_train.flags.c_contiguous
    assert np.array_equal(data.x_train, want_train)
    if validation_split:
        assert data.x_val is not None
        assert np.array_equal(data.x_val, want_val)
    else:
        assert data.x_val is None


def test_features_copied_from_input():
    """The training features are a copy: changing x afterwards does not change them."""
    x, y = linear_regression_data(n_samples=20)
    spec = spec_for(training={"dtype": "float64"})

    data = prepare_data(spec, x, y, "regression")
    x[0, 0] = 1e6

    assert data.x_train[0, 0] != 1e6


def test_finite_features_with_overflowing_sum_accepted():
    """Finite float32 features whose float32 sum overflows are accepted, not called infinite."""
    x = np.full((4, 2), 3e38, dtype=np.float32)
    spec = spec_for(training={"dtype": "float32"})

    data = prepare_data(spec, x, np.arange(4.0), "regression")

    assert np.array_equal(data.x_train, x)
