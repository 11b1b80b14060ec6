import json

import pandas as pd
import pytest

from boneage_features.cli import main


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert main(["fit", "m.csv"]) == 2  # -o is required


def test_fit_predict_evaluate_in_process(tmp_path, synthetic_manifest, capsys):
    model = tmp_path / "model.joblib"
    common = ["--cache-dir", str(tmp_path / "cache"), "-q", "--n-jobs", "1"]
    assert main(["fit", str(synthetic_manifest), "-o", str(model), *common]) == 0
    assert model.exists()

    manifest = pd.read_csv(synthetic_manifest)
    manifest.loc[1, "image"] = "missing.png"
    manifest.loc[2, "sex"] = "unknown"
    (tmp_path / "bad.png").write_text("text, not a PNG")
    manifest.loc[3, "image"] = "bad.png"
    scoring = synthetic_manifest.parent / "score.csv"
    manifest.drop(columns="boneage").to_csv(scoring, index=False)
    out = tmp_path / "out" / "predictions.csv"
    assert main(["predict", str(scoring), "-m", str(model), "-o", str(out), *common]) == 0
    result = pd.read_csv(out, keep_default_na=False)
    assert len(result) == len(manifest)
    assert list(result.columns) == ["id", "image", "boneage_months", "status", "error"]
    failed = result[result["status"] != "ok"]
    assert list(failed.index) == [1, 2, 3]
    assert "missing.png" in failed.loc[1, "error"] and "not found" in failed.loc[1, "error"]
    assert "unknown" in failed.loc[2, "error"]
    assert "bad.png" in failed.loc[3, "error"]
    assert not list(out.parent.glob(".*tmp"))  # written atomically, no leftovers

    cv = tmp_path / "cv.json"
    oof = tmp_path / "oof.csv"
    assert main(["evaluate", str(synthetic_manifest), "--folds", "3", "-o", str(cv), "--predictions", str(oof), *common]) == 0
    printed = capsys.readouterr().out
    assert "MAE" in printed and "sex M" in printed
    figures = json.loads(cv.read_text())
    assert figures["overall"]["n"] == 24 and len(figures["folds"]) == 3
    assert figures["config"]["features"] == "both"  # whole hand and regions by default
    assert len(pd.read_csv(oof)) == 24

    from boneage_features import FeatureExtractor

    for layout, extractor in (("whole", FeatureExtractor(regions=())), ("regions", FeatureExtractor(families=()))):
        assert main(["evaluate", str(synthetic_manifest), "--folds", "3", "-o", str(cv), "--features", layout,
                     *common]) == 0
        figures = json.loads(cv.read_text())
        assert figures["config"]["features"] == layout
        assert figures["config"]["n_features"] == len(extractor.get_feature_names_out()) + 1  # + sex


def test_input_errors_exit_1(tmp_path, caplog):
    assert main(["predict", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "p.csv"), "-q"]) == 1
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,gender\na.png,M\n")
    assert main(["fit", str(manifest), "-o", str(tmp_path / "m.joblib"), "-q"]) == 1
    assert "nope.csv" in caplog.text and "'sex'" in caplog.text


def test_predict_uses_shipped_model(tmp_path, data_dir):
    manifest = tmp_path / "few.csv"
    pd.DataFrame(
        {"image": [str(data_dir / "train" / f"{i}.jpg") for i in (1377, 1378, 1379)], "sex": ["F", "F", "M"]}
    ).to_csv(manifest, index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", str(manifest), "-o", str(out), "-q", "--no-cache"]) == 0
    result = pd.read_csv(out)
    assert (result["status"] == "ok").all()
    assert result["boneage_months"].between(0, 240).all()


def _regions_manifest(synthetic_manifest, tmp_path):
    """The synthetic manifest plus a row pointing to a missing file and one to a corrupt file."""
    manifest = pd.read_csv(synthetic_manifest)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    extra = pd.DataFrame({"image": ["missing.png", "corrupt.png"], "sex": ["F", "M"], "boneage": [10.0, 20.0]})
    path = tmp_path / "regions_manifest.csv"
    pd.concat([manifest, extra], ignore_index=True).to_csv(path, index=False)
    return path


def test_regions_writes_a_row_per_image_and_overlays(tmp_path, synthetic_manifest, caplog):
    import cv2

    from boneage_features.regions import LANDMARK_NAMES
    from boneage_features.regions import REGION_NAMES

    manifest = _regions_manifest(synthetic_manifest, tmp_path)
    out = tmp_path / "regions-out"
    assert main(["regions", str(manifest), "-o", str(out), "--n-jobs", "1", "-q"]) == 0
    table = pd.read_csv(out / "regions.csv", index_col="id", keep_default_na=False, na_values=[""])
    assert len(table) == 26 and list(table.index[-2:]) == ["missing", "corrupt"]
    assert list(table.columns[:3]) == ["image", "status", "error"]
    assert (table["status"].iloc[:24] == "ok").all() and (table["status"].iloc[24:] == "error").all()
    assert "missing.png" in table.loc["missing", "error"] and "not found" in table.loc["missing", "error"]
    assert "corrupt.png" in table.loc["corrupt", "error"]
    assert table.loc["missing"].drop(["image", "status", "error"]).isna().all()
    for name in LANDMARK_NAMES:
        assert {f"{name}_x", f"{name}_y", f"{name}_source_x", f"{name}_source_y"} <= set(table.columns)
    # landmarks on the radiograph itself: inside each input image, and where the canonical ones are found
    for image_id, row in table.iloc[:24].iterrows():
        height, width = cv2.imread(str(row["image"]), cv2.IMREAD_GRAYSCALE).shape
        xs = row[[f"{n}_source_x" for n in LANDMARK_NAMES]].astype(float)
        ys = row[[f"{n}_source_y" for n in LANDMARK_NAMES]].astype(float)
        canonical = row[[f"{n}_x" for n in LANDMARK_NAMES]].astype(float)
        assert (xs.notna().to_numpy() == canonical.notna().to_numpy()).all(), image_id
        assert xs.dropna().between(-0.5, width - 0.5).all() and ys.dropna().between(-0.5, height - 0.5).all(), image_id
    for name in REGION_NAMES:
        parts = ("cx", "cy", "h", "w", "angle", "found")
        assert {f"{name}_{part}" for part in parts} <= set(table.columns)
        assert table[f"{name}_found"].iloc[:24].isin([0, 1]).all()
    assert {"diagnostics_hand_found", "diagnostics_regions_ok", "diagnostics_carpal_found"} <= set(table.columns)
    assert (table["diagnostics_hand_found"].iloc[:24] == 1).all()
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert overlays == [f"hand{i:02d}.png" for i in range(24)]
    picture = cv2.imread(str(out / "overlays" / "hand00.png"))
    assert picture.shape == (384, 320, 3)
    assert "row missing failed" in caplog.text and "corrupt.png" in caplog.text
    assert not list(out.glob(".*tmp"))

    # the columns do not depend on which rows succeed, nor on parallelism
    only_bad = tmp_path / "bad.csv"
    pd.read_csv(manifest).iloc[24:].to_csv(only_bad, index=False)
    assert main(["regions", str(only_bad), "-o", str(tmp_path / "bad-out"), "-q", "--no-overlays"]) == 0
    bad_table = pd.read_csv(tmp_path / "bad-out" / "regions.csv", index_col="id")
    assert list(bad_table.columns) == list(table.columns) and len(bad_table) == 2
    assert not (tmp_path / "bad-out" / "overlays").exists()
    out2 = tmp_path / "parallel"
    assert main(["regions", str(manifest), "-o", str(out2), "--n-jobs", "2", "--limit", "4", "-q"]) == 0
    parallel = pd.read_csv(out2 / "regions.csv", index_col="id", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(
        parallel.drop(columns="error"), table.iloc[:4].drop(columns="error"), check_dtype=False
    )
    assert len(list((out2 / "overlays").glob("*.png"))) == 4


def test_regions_usage_and_input_errors(tmp_path, capsys):
    assert main(["regions", "m.csv"]) == 2  # -o is required
    assert main(["regions", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert main(["regions", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out"), "--limit", "0", "-q"]) == 1
    assert main(["--help"]) == 0 and "regions" in capsys.readouterr().out
