"""DeepLabV3 keypoint-heatmap models built with torchvision's own builders.

The architecture and input sizes below were chosen from timings of the candidate backbones
(``deeplabv3_mobilenet_v3_large`` and ``deeplabv3_resnet50`` at several input sizes, torch and
ONNX Runtime) against the anchor configuration; ``benchmarks/backbones.md`` holds the table and
how to re-run it, and ``echomeasure bench`` times the anchor in the same run as ours.  ONNX
Runtime's dynamic int8 quantisation was slower than fp32 on this CPU (its ConvInteger kernels
do not pay), so inference stays fp32.

**Train this:**

* ``plax-linear``: ``deeplabv3_mobilenet_v3_large``, input (H, W) = (192, 192), 8 output
  channels (:data:`echomeasure.catalog.KEYPOINTS_2D`), normalisation ``"unit"`` (RGB / 255, no
  mean/std); its model time per 100-frame clip fits the 2 s end-to-end budget.
* ``doppler-peaks``: ``deeplabv3_mobilenet_v3_large``, input (H, W) = (256, 512), 5 output
  channels (:data:`echomeasure.catalog.DOPPLER_CHANNELS`), normalisation ``"unit"``.  A Doppler
  clip is one strip, so the larger input (better velocity resolution) is paid once per clip.
  (Shipped 1.0 was trained at 128x256; :mod:`echomeasure.propose.envelope` then reads the
  velocity from the image at full resolution, so the input size matters less for accuracy.)

The model output is *logits*; the training target is a Gaussian heatmap per channel at the
keypoint position in model-input pixel coordinates (see
:class:`echomeasure.models.preprocess.CropTransform`), trained with a per-pixel
``binary_cross_entropy_with_logits`` (decoding applies a sigmoid for confidence).

The wrapped torchvision network is stored in the attribute ``m``, so ``model.state_dict()``
has the same ``m.``-prefixed keys as the EchoNet-Measurements checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# The architecture choices are torch-free constants (the registry and the ONNX inference path
# use them without importing torch); re-exported here where the decision is documented.
from echomeasure.models.choices import (
    ANCHOR_ARCH,
    ANCHOR_INPUT_SIZE,
    ARCHITECTURES,
    DEFAULT_ARCH,
    DEFAULT_INPUT_SIZE_2D,
    DEFAULT_INPUT_SIZE_DOPPLER,
    Normalisation,
)

__all__ = [
    "ANCHOR_ARCH", "ANCHOR_INPUT_SIZE", "ARCHITECTURES", "DEFAULT_ARCH", "DEFAULT_INPUT_SIZE_2D",
    "DEFAULT_INPUT_SIZE_DOPPLER", "HeatmapModel", "Normalisation", "build_model", "count_parameters",
    "prepare_for_inference",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _torchvision_builder(arch: str) -> Callable[..., nn.Module]:
    from torchvision.models import segmentation

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return getattr(segmentation, arch)


class HeatmapModel(nn.Module):
    """A torchvision DeepLabV3 whose forward returns heatmap logits as a plain tensor.

    Parameters
    ----------
    net
        A torchvision ``DeepLabV3`` built with ``aux_loss=False``; kept as ``self.m``.
    normalisation
        ``"unit"``: the input in [0, 1] goes to the network as is (EchoNet convention);
        ``"imagenet"``: the ImageNet mean/std is applied inside :meth:`forward`.

    Notes
    -----
    ``forward(x)`` takes float ``(B, 3, H, W)`` RGB in [0, 1] and returns ``(B, C, H, W)``
    logits at the input resolution (torchvision upsamples bilinearly).  The normalisation
    constants are non-persistent buffers, so the state dict holds only ``m.*`` keys.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, normalisation: Normalisation = "unit") -> None:
        super().__init__()
        if normalisation not in ("unit", "imagenet"):
            raise ValueError(f"unknown normalisation {normalisation!r}; use 'unit' or 'imagenet'")
        self.m = net
        self.normalisation: Normalisation = normalisation
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @property
    def num_outputs(self) -> int:
        """Number of heatmap channels."""
        head = self.m.get_submodule("classifier")
        assert isinstance(head, nn.Sequential), "a DeepLabV3/FCN head is a Sequential ending in a Conv2d"
        last = head[-1]
        assert isinstance(last, nn.Conv2d), "a DeepLabV3/FCN head is a Sequential ending in a Conv2d"
        return int(last.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (documented on the class)
        if self.normalisation == "imagenet":
            x = (x - self.mean) / self.std
        return self.m(x)["out"]


def build_model(arch: str, num_outputs: int, *, normalisation: Normalisation = "unit") -> HeatmapModel:
    """Build a randomly initialised DeepLabV3 heatmap model.

    Parameters
    ----------
    arch
        One of :data:`ARCHITECTURES` (e.g. ``"deeplabv3_mobilenet_v3_large"``).
    num_outputs
        Heatmap channels: ``len(catalog.KEYPOINTS_2D)`` (8) for 2D, ``len(catalog.DOPPLER_CHANNELS)``
        (5) for Doppler, 1 or 2 for EchoNet checkpoints.
    normalisation
        See :class:`HeatmapModel`.

    Returns
    -------
    HeatmapModel
        In training mode; ``forward`` maps float ``(B, 3, H, W)`` in [0, 1] to logits
        ``(B, num_outputs, H, W)``.  Nothing is downloaded (``weights=None, weights_backbone=None``)
        and there is no auxiliary head (``aux_loss=False``).
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    builder = _torchvision_builder(arch)
    net = builder(weights=None, weights_backbone=None, num_classes=num_outputs, aux_loss=False)
    return HeatmapModel(net, normalisation=normalisation)


def prepare_for_inference(model: nn.Module, *, num_threads: int | None = None) -> nn.Module:
    """Put a model in eval mode with channels-last memory format (faster convolutions on CPU).

    Parameters
    ----------
    model
        Any module built by :func:`build_model`.
    num_threads
        If given, ``torch.set_num_threads(num_threads)`` is applied (process-wide).
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model.eval()
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (the ``num_params`` of the registry metadata)."""
    return sum(int(p.numel()) for p in model.parameters())
