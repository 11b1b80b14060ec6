"""Import ``boneage_features`` submodules without running the package's ``__init__``.

The GPU machine has torch, numpy, pandas and cv2 but not the package's other dependencies
(LightGBM, XGBoost, ...) that ``boneage_features/__init__.py`` pulls in; the scripts here only need
``boneage_features.embed`` and ``boneage_features.preprocess``, which import none of them. A bare
module object with the package's ``__path__`` stands in for the package, so its submodules import
normally. Vendored pure-Python packages under ``.gpu/common/vendor`` (efficientnet_lite_pytorch) are put
on ``sys.path`` when they are not installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup(vendor: Path | None = None) -> None:
    if "boneage_features" not in sys.modules:
        pkg = types.ModuleType("boneage_features")
        pkg.__path__ = [str(ROOT / "boneage_features")]
        sys.modules["boneage_features"] = pkg
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    vendor = vendor if vendor is not None else ROOT / ".gpu" / "common" / "vendor"
    try:
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(vendor))
