"""CNNEmbedder and a Pipeline that stacks the CNN's age into the booster (CPU, no downloads)."""

import pickle

import cv2
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

import boneage_features as bf  # noqa: E402
from boneage_features.embed import CNNEmbedder  # noqa: E402
from boneage_features.embed.backbone import build_model, save_model  # noqa: E402
from boneage_features.embed.embedder import AGE_FEATURE  # noqa: E402
from boneage_features.io import file_sha1  # noqa: E402

from .conftest import draw_hand  # noqa: E402


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cnn") / "net.pt"
    save_model(build_model(pretrained=False), path)
    return path


@pytest.fixture
def hands(tmp_path):
    rows = []
    for i in range(6):
        path = tmp_path / f"h{i}.png"
        cv2.imwrite(str(path), (draw_hand(finger_length=0.25 + 0.03 * i, seed=i) * 255).astype(np.uint8))
        rows.append({"image": str(path), "sex": "MF"[i % 2]})
    return pd.DataFrame(rows, index=[f"h{i}" for i in range(6)])


def test_features_are_named_and_deterministic(tiny_weights, hands):
    embedder = CNNEmbedder(weights=tiny_weights, size=(128, 96), device="cpu").fit()
    first = embedder.transform(hands)
    assert list(first.columns) == [AGE_FEATURE] and first.index.equals(hands.index)
    assert np.isfinite(first.to_numpy()).all()
    pd.testing.assert_frame_equal(first, CNNEmbedder(weights=tiny_weights, size=(128, 96), device="cpu").transform(hands))
    wide = CNNEmbedder(weights=tiny_weights, size=(128, 96), include_embedding=True).transform(hands.iloc[:2])
    assert wide.shape == (2, 1281) and wide.columns[1] == "whole_cnn_0000"
    np.testing.assert_allclose(wide[AGE_FEATURE], first[AGE_FEATURE].iloc[:2], rtol=1e-5)


def test_out_of_fold_ages_replace_the_network_for_training_images(tiny_weights, hands, tmp_path):
    table = tmp_path / "oof.csv"
    pd.DataFrame({"sha1": [file_sha1(hands["image"].iloc[1])], "cnn_age": [77.5]}).to_csv(table, index=False)
    embedder = CNNEmbedder(weights=tiny_weights, oof_table=table, size=(128, 96))
    trained = embedder.transform(hands, oof=True)
    plain = embedder.transform(hands)
    assert trained[AGE_FEATURE].iloc[1] == pytest.approx(77.5)
    assert plain[AGE_FEATURE].iloc[1] != pytest.approx(77.5)
    np.testing.assert_allclose(trained.drop(index="h1"), plain.drop(index="h1"))
    with pytest.raises(ValueError, match="out-of-fold"):
        CNNEmbedder(weights=tiny_weights, oof_table=table, include_embedding=True).transform(hands, oof=True)


def test_pipeline_with_cnn_pickles_and_predicts_identically(tiny_weights, hands, tmp_path):
    y = np.linspace(20, 200, len(hands))
    model = bf.Pipeline(
        extractor=bf.FeatureExtractor(cache_dir=False),
        cnn=CNNEmbedder(weights=tiny_weights, size=(128, 96)),
        regressor_params={"n_estimators": 30, "learning_rate": 0.2},
    ).fit(hands, y)
    assert AGE_FEATURE in model.feature_names_ and model.feature_names_[-1] == "clin_sex_male"
    assert model.regressor_.base_column == AGE_FEATURE  # the stacked default: correct the CNN's age
    predicted = model.predict(hands)
    again = pickle.loads(pickle.dumps(model))
    assert getattr(again.cnn_, "_net", None) is None  # the network travels as its file, not pickled
    np.testing.assert_array_equal(again.predict(hands), predicted)
    path = model.save(tmp_path / "with_cnn.joblib")
    np.testing.assert_array_equal(bf.load_model(path).predict(hands), predicted)


def test_shipped_network_reads_real_radiographs(data_dir, train_manifest):
    X, y = train_manifest
    rows = X.sample(n=8, random_state=3).index
    ages = CNNEmbedder(device="cpu").transform(X.loc[rows])[AGE_FEATURE]
    assert np.mean(np.abs(ages - y.loc[rows])) < 20  # a 12-epoch network: ~7 months on held-out data
    oof = CNNEmbedder().transform(X.loc[rows], oof=True)[AGE_FEATURE]
    table = pd.read_csv(bf.pipeline.artifacts_dir() / "cnn" / "cnn_oof.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(oof.to_numpy(), table.loc[rows, "cnn_age"].to_numpy(), rtol=1e-6)


def test_cli_evaluate_with_the_shipped_cnn(tmp_path, synthetic_manifest):
    import json

    from boneage_features.cli import main

    out = tmp_path / "cv.json"
    args = ["--folds", "3", "--cnn", "-q", "--n-jobs", "1", "--cache-dir", str(tmp_path / "c"), "-o", str(out)]
    assert main(["evaluate", str(synthetic_manifest), *args]) == 0
    figures = json.loads(out.read_text())
    assert figures["config"]["n_features"] == len(bf.FeatureExtractor().get_feature_names_out()) + 2


class _Recorder:
    """A regressor that remembers the CNN ages it was trained and asked on, and predicts 0."""

    seen = []

    def fit(self, X, y):
        _Recorder.seen.append(("fit", X.index.tolist(), X[AGE_FEATURE].tolist()))
        return self

    def predict(self, X):
        _Recorder.seen.append(("predict", X.index.tolist(), X[AGE_FEATURE].tolist()))
        return np.zeros(len(X))


def _cross_fit_table(hands, path, folds, nested=True):
    """An out-of-fold table for ``hands``: out-of-fold age 100 + row, nested age 10 * k + row."""
    table = pd.DataFrame({"sha1": [file_sha1(p) for p in hands["image"]], "fold": folds,
                          "cnn_age": 100.0 + np.arange(len(hands))})
    if nested:
        for k in range(max(folds) + 1):
            table[f"cnn_age_{k}"] = np.where(np.asarray(folds) == k, np.nan, 10.0 * k + np.arange(len(hands)))
    table.sample(frac=1.0, random_state=1).to_csv(path, index=False)  # rows found by SHA-1, not by place
    return path


def _stacked(tiny_weights, oof_table):
    return bf.Pipeline(extractor=bf.FeatureExtractor(families=("intensity",), regions=(), cache_dir=False),
                       cnn=CNNEmbedder(weights=tiny_weights, oof_table=oof_table, size=(128, 96)))


@pytest.mark.parametrize("precomputed", [False, True])
def test_nested_cross_validation_trains_on_networks_that_never_saw_the_evaluated_fold(
    tiny_weights, hands, tmp_path, monkeypatch, precomputed
):
    folds = [0, 1, 2, 0, 1, 2]
    pipeline = _stacked(tiny_weights, _cross_fit_table(hands, tmp_path / "oof.csv", folds))
    # A table made without oof=True holds the network's own ages (it saw every fold): not used.
    table = pipeline.make_table(hands)[0] if precomputed else None
    monkeypatch.setattr(bf.Pipeline, "_new_regressor", lambda self: _Recorder())
    _Recorder.seen = []
    result = bf.evaluate.cross_validate(pipeline, hands, np.linspace(20, 200, 6), n_splits=3, table=table)
    assert result["config"]["cnn_stacking"] == "nested" and result["config"]["folds_from"] == "cnn"
    np.testing.assert_array_equal(result["predictions"]["fold"], folds)
    for k in range(3):
        (fit, train_rows, train_ages), (predict, test_rows, test_ages) = _Recorder.seen[2 * k: 2 * k + 2]
        assert (fit, predict) == ("fit", "predict")
        own = [i for i, f in enumerate(folds) if f == k]
        assert test_rows == [hands.index[i] for i in own]
        assert test_ages == [100.0 + i for i in own]  # the network trained without fold k
        others = [i for i, f in enumerate(folds) if f != k]
        assert train_rows == [hands.index[i] for i in others]
        assert train_ages == [10.0 * k + i for i in others]  # networks without fold k and their own


def test_cross_validation_refuses_what_it_cannot_nest(tiny_weights, hands, tmp_path, caplog):
    y = np.linspace(20, 200, 6)
    seen_half = _cross_fit_table(hands.iloc[:3], tmp_path / "half.csv", [0, 1, 0])
    with pytest.raises(ValueError, match="3 of 6 images were the CNN's training images"):
        bf.evaluate.cross_validate(_stacked(tiny_weights, seen_half), hands, y, n_splits=2)
    three = _cross_fit_table(hands, tmp_path / "three.csv", [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="cross-fitted on 3 folds: evaluate with 3 folds"):
        bf.evaluate.cross_validate(_stacked(tiny_weights, three), hands, y, n_splits=2)
    flat = _cross_fit_table(hands, tmp_path / "flat.csv", [0, 1, 0, 1, 0, 1], nested=False)
    with caplog.at_level("WARNING", logger="boneage_features.evaluate"):
        result = bf.evaluate.cross_validate(_stacked(tiny_weights, flat), hands, y, n_splits=2)
    assert result["config"]["cnn_stacking"] == "not nested" and "slightly optimistic" in caplog.text
    unseen = _cross_fit_table(hands.iloc[:1], tmp_path / "other.csv", [0])
    result = bf.evaluate.cross_validate(_stacked(tiny_weights, unseen), hands.iloc[1:], np.full(5, 100.0), n_splits=2)
    assert result["config"]["cnn_stacking"] == "unseen images" and result["config"]["folds_from"] == "make_folds"
    # A subset that leaves one of the CNN's folds empty would score nothing there.
    three = _cross_fit_table(hands, tmp_path / "three.csv", [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"fold\(s\) \[1\]"):
        bf.evaluate.cross_validate(_stacked(tiny_weights, three), hands.iloc[[0, 2, 3, 5]], y[:4], n_splits=3)
    # One image in two folds cannot be nested.
    twice = pd.read_csv(three)
    twice = pd.concat([twice, twice.iloc[[0]].assign(fold=(twice["fold"].iloc[0] + 1) % 3)])
    twice.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(ValueError, match="in two folds"):
        bf.evaluate.cross_validate(_stacked(tiny_weights, tmp_path / "twice.csv"), hands, y, n_splits=3)
    # Arrays cannot be looked up: refused beside training images, flagged alone.
    arrays = hands.assign(image=[cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in hands["image"]])
    mixed = pd.concat([hands.iloc[:3], arrays.iloc[3:]])
    with pytest.raises(ValueError, match="3 of 6 images are arrays"):
        bf.evaluate.cross_validate(_stacked(tiny_weights, three), mixed, y, n_splits=3)
    caplog.clear()
    with caplog.at_level("WARNING", logger="boneage_features.evaluate"):
        result = bf.evaluate.cross_validate(_stacked(tiny_weights, three), arrays.iloc[1:], np.full(5, 100.0),
                                            n_splits=2)
    assert result["config"]["cnn_stacking"] == "unchecked arrays" and "cannot be checked" in caplog.text


def test_shipped_cross_fit_folds_are_the_evaluation_folds(data_dir, train_manifest):
    """The shipped CNN's folds are make_folds' on the whole manifest, and every nested age is there."""
    X, y = train_manifest
    table = pd.read_csv(bf.pipeline.artifacts_dir() / "cnn" / "cnn_oof.csv", dtype={"id": str}).set_index("id")
    folds = bf.evaluate.make_folds(y.to_numpy(), (X["sex"] == "M").to_numpy())
    np.testing.assert_array_equal(table.loc[X.index, "fold"].to_numpy(), folds)
    nested = table.loc[X.index, [f"cnn_age_{k}" for k in range(5)]].to_numpy()
    np.testing.assert_array_equal(np.isnan(nested), folds[:, None] == np.arange(5)[None, :])
    # Networks on 3 of 5 folds are a little weaker than the out-of-fold ones on 4 (8.1 vs 7.9 months).
    assert 7 < np.nanmean(np.abs(nested - y.to_numpy()[:, None])) < 9
