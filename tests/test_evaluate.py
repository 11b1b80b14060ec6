import numpy as np
import pytest

from boneage_features.evaluate import AGE_BANDS, age_band, format_report, make_folds, regression_metrics


def test_age_bands_edges():
    assert list(age_band([0, 23.9, 24, 71, 72, 119, 120, 167, 168, 228])) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert len(AGE_BANDS) == 5


def test_folds_are_seeded_and_stratified():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 228, 1000)
    male = rng.integers(0, 2, 1000)
    folds = make_folds(y, male)
    np.testing.assert_array_equal(folds, make_folds(y, male))
    assert not np.array_equal(folds, make_folds(y, male, random_state=1))
    assert sorted(np.bincount(folds)) == [200] * 5
    for fold in range(5):
        share_male = male[folds == fold].mean()
        assert abs(share_male - male.mean()) < 0.03


def test_metrics_known_values():
    y = np.array([10.0, 30.0, 100.0, 200.0])
    pred = y + np.array([2.0, -2.0, 4.0, -4.0])
    m = regression_metrics(y, pred, male=[1, 0, 1, 0])
    assert m["mae"] == pytest.approx(3.0)
    assert m["rmse"] == pytest.approx(np.sqrt(10.0))
    assert m["bias"] == pytest.approx(0.0)
    assert m["mae_by_sex"]["M"]["mae"] == pytest.approx(3.0)
    assert m["mae_by_band"]["0-2y"] == {"n": 1, "mae": 2.0}
    assert "14-19y" in m["mae_by_band"] and "10-14y" not in m["mae_by_band"]
    with pytest.raises(ValueError, match="1-D"):
        regression_metrics(y, pred[:2])


def test_report_lists_every_band():
    result = {
        "config": {"n_splits": 5, "booster": "lightgbm", "sex_mode": "feature", "n_features": 10},
        "overall": regression_metrics(np.arange(0, 228, 10.0), np.arange(0, 228, 10.0) + 1, np.arange(23) % 2),
        "folds": [{"mae": 1.0}],
    }
    text = format_report(result)
    for label, _, _ in AGE_BANDS:
        assert label in text


def test_mae_by_band_and_sex():
    from boneage_features.evaluate import mae_by_band_and_sex

    table = mae_by_band_and_sex([10, 30, 100, 200, 150], [12, 25, 110, 190, 150], [1, 0, 1, 0, 0])
    assert list(table.index) == [label for label, _, _ in AGE_BANDS] + ["all"]
    assert table.at["0-2y", ("M", "mae")] == 2 and table.at["0-2y", ("F", "n")] == 0
    assert np.isnan(table.at["0-2y", ("F", "mae")])
    assert table.at["all", ("F", "mae")] == pytest.approx(5.0) and table.at["all", ("all", "n")] == 5
    with pytest.raises(ValueError, match="one length"):
        mae_by_band_and_sex([1, 2], [1, 2], [True])
