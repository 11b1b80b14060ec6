"""The shipped model travels inside a built wheel and is found there without a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_and_finds_the_shipped_model(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("boneage_features-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "boneage_features/_artifacts/model.joblib" in names
        assert "boneage_features/_artifacts/cnn/lite0_boneage.pt" in names
        archive.extractall(tmp_path / "site")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import boneage_features as bf; "
        "print(bf.shipped_model_path()); print(bf.load_model().version_)"
    )
    # Run outside the checkout so the editable install's copy cannot be what is found.
    found = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "site")], capture_output=True, text=True, cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr[-2000:]
    path, version = found.stdout.split()
    assert Path(path).is_relative_to(tmp_path / "site")
    import boneage_features

    assert version == boneage_features.__version__
