"""Skeletal (bone) age from a radiograph of the left hand.

Classical features of the hand (HOG, LBP, intensity statistics, of the whole hand and of 14 bone
regions) and optionally a fine-tuned CNN's age estimate are fused with the child's sex and fed to a
gradient-boosted regressor (LightGBM or XGBoost) that predicts months.

>>> import boneage_features as bf
>>> X, y = bf.read_manifest("train.csv")           # doctest: +SKIP
>>> model = bf.Pipeline().fit(X, y)                  # doctest: +SKIP
>>> model.predict(X)                                 # doctest: +SKIP
"""

__version__ = "0.6.0"

from .io import ImageReadError, ManifestError, read_image, read_manifest
from .features import FeatureExtractor
from .model import BoneAgeRegressor
from .pipeline import Pipeline, load_model, shipped_model_path
from .explain import global_importance, group_contributions
from .plotting import draw_regions, plot_regions  # matplotlib is imported only when a figure is made
from .figures import (  # matplotlib likewise
    plot_bland_altman,
    plot_importance,
    plot_mae_by_band,
    plot_predicted_vs_reference,
    plot_region_heatmap,
    plot_waterfall,
)
from .report import write_report

__all__ = [
    "BoneAgeRegressor",
    "FeatureExtractor",
    "ImageReadError",
    "ManifestError",
    "Pipeline",
    "__version__",
    "draw_regions",
    "global_importance",
    "group_contributions",
    "load_model",
    "plot_bland_altman",
    "plot_importance",
    "plot_mae_by_band",
    "plot_predicted_vs_reference",
    "plot_region_heatmap",
    "plot_regions",
    "plot_waterfall",
    "read_image",
    "read_manifest",
    "shipped_model_path",
    "write_report",
]
