"""Small models built here (the rest come from torchvision/timm with ``weights=None``)."""

from pipelines.train.models.unet import UNet

__all__ = ["UNet"]
