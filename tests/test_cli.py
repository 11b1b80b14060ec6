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
    assert len(pd.read_csv(oof)) == 24


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
