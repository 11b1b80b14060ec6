"""Shared fixtures: the real RSNA data folder (skipped when absent), synthetic hands, a private cache."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsna-bone-age"


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory):
    """Keep the tests' feature cache out of the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BONEAGE_FEATURES_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def data_dir():
    if not (DATA_DIR / "train.csv").exists():
        pytest.skip(f"RSNA data folder not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def train_manifest(data_dir):
    """(X, y) of the whole training manifest."""
    from boneage_features import read_manifest

    return read_manifest(data_dir / "train.csv")


@pytest.fixture(scope="session")
def real_subset(train_manifest):
    """300 real radiographs drawn across ages (seeded): X, y."""
    X, y = train_manifest
    rows = X.sample(n=300, random_state=1).index
    return X.loc[rows], y.loc[rows]


def draw_hand(height=384, width=320, *, finger_length=0.35, seed=0):
    """A crude synthetic hand radiograph: forearm, palm and five fingers, bright on dark, with noise."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width), 0.08, np.float32)
    palm_top, palm_bottom = int(0.45 * height), int(0.75 * height)
    cv2.rectangle(image, (int(0.25 * width), palm_top), (int(0.75 * width), palm_bottom), 0.6, -1)
    cv2.rectangle(image, (int(0.35 * width), palm_bottom), (int(0.65 * width), height - 1), 0.55, -1)
    for k, x in enumerate(np.linspace(0.29, 0.66, 4)):
        top = int(palm_top - finger_length * height * (0.8 + 0.1 * (k in (1, 2))))
        cv2.rectangle(image, (int(x * width), top), (int((x + 0.06) * width), palm_top), 0.65, -1)
        for joint in (0.33, 0.66):  # dark joint spaces across each finger
            y = int(top + joint * (palm_top - top))
            cv2.line(image, (int(x * width), y), (int((x + 0.06) * width), y), 0.3, 2)
    thumb = np.array([[0.75 * width, 0.7 * height], [0.9 * width, 0.45 * height], [0.85 * width, 0.42 * height],
                      [0.72 * width, 0.6 * height]], np.int32)
    cv2.fillConvexPoly(image, thumb, 0.62)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image, 0, 1)


@pytest.fixture
def synthetic_manifest(tmp_path):
    """A plain manifest of 24 synthetic hands written as PNG files, with made-up ages."""
    rows = []
    for i in range(24):
        image = draw_hand(finger_length=0.25 + 0.01 * i, seed=i)
        path = tmp_path / f"hand{i:02d}.png"
        cv2.imwrite(str(path), (image * 255).astype(np.uint8))
        rows.append({"image": path.name, "sex": "M" if i % 2 else "F", "boneage": 12.0 + 8 * i})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
