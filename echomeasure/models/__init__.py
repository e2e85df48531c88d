"""DeepLabV3 keypoint models: builders, preprocessing, weights registry, decoding, runtime.

Import the submodules directly (``echomeasure.models.registry`` ...); this package does not
import torch by itself.
"""
