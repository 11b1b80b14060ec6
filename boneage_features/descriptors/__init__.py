"""Descriptor families: one module each, one registry.

Every family is a function ``describe(image, mask, *, source, **params) -> (names, values)`` that takes
the preprocessed hand (float32 in [0, 1], background 0) and its mask and returns flat feature names
``<source>_<family>_<component>`` with a float32 vector of the same length. Names depend only on the
parameters, never on the image, so every image of a table has the same columns; a value that cannot be
computed (an empty grid cell, say) is NaN, which both boosters take natively.
"""

from . import hog, intensity, lbp

#: family name -> module with ``describe`` and ``feature_names``
DESCRIPTORS = {
    "hog": hog,
    "lbp": lbp,
    "intensity": intensity,
}

__all__ = ["DESCRIPTORS"]
