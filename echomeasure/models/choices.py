"""Architecture choices of the keypoint models, as torch-free constants.

The measurements behind these choices are in :mod:`echomeasure.models.builders` (docstring)
and ``benchmarks/backbones.md``.
"""

from __future__ import annotations

from typing import Literal

Normalisation = Literal["unit", "imagenet"]

#: Architectures accepted by :func:`build_model` (torchvision segmentation builders).
ARCHITECTURES: tuple[str, ...] = (
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
)

#: Clip-level classifiers (:mod:`echomeasure.models.view`): not segmentation builders.
CLASSIFIER_ARCHITECTURES: tuple[str, ...] = ("view_cnn",)

#: The architecture and input sizes chosen by measurement (see the module docstring).
DEFAULT_ARCH = "deeplabv3_mobilenet_v3_large"
DEFAULT_INPUT_SIZE_2D: tuple[int, int] = (192, 192)
DEFAULT_INPUT_SIZE_DOPPLER: tuple[int, int] = (256, 512)
#: The anchor configuration (EchoNet-Measurements), used as the speed reference in ``bench``.
ANCHOR_ARCH = "deeplabv3_resnet50"
ANCHOR_INPUT_SIZE: tuple[int, int] = (480, 640)
