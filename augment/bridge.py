"""A bridge to albumentations (2.0.x, MIT): run a per-sample numpy ``albumentations.Compose`` on
``[C,H,W]`` / ``[B,C,H,W]`` tensors as an augment transform.

Each sample draws a seed from torch (the call's ``torch.Generator`` when given) and the pipeline
is reseeded with it before that sample, so results follow the torch seed and a batch equals its
samples run one by one. Masks are passed to albumentations together with their image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from augment._transform import Params, Transform, draw_device

__all__ = ["Albumentations"]


class Albumentations(Transform):
    """Wrap an ``albumentations.Compose`` (or a single albumentations transform).

    The pipeline must keep the image size. Images go to albumentations as HWC numpy arrays of the
    same dtype and come back as tensors of the input's dtype and device. A mask passed with the
    image goes through the pipeline with it; inside ``Compose`` / ``OneOf`` / ``RandomApply`` the
    bridge has no image to rerun for a mask, so those compositions do not carry masks
    (their ``carries_masks`` is ``False``). The flags say what any pipeline may do: all set.

    Args:
        compose: the albumentations pipeline.
    """

    # an arbitrary albumentations pipeline may do anything
    geometric = True
    photometric = True
    blends = True
    carries_masks = True  # called itself: the mask runs through the pipeline with its image
    _masks_from_params = False  # inside Compose / OneOf / RandomApply there is no image to run

    def __init__(self, compose: Any) -> None:
        import albumentations as A

        if isinstance(compose, A.BasicTransform):
            compose = A.Compose([compose])
        if not isinstance(compose, A.BaseCompose):
            raise TypeError(f"compose must be an albumentations Compose or transform, got {type(compose).__name__}")
        self.compose = compose

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        seeds = torch.randint(0, 2**31 - 1, (x.shape[0],), generator=generator, device=draw_device(generator))
        return {"seed": seeds.cpu()}

    def _run(self, image: torch.Tensor, seed: int, mask: torch.Tensor | None = None) -> dict[str, Any]:
        self.compose.set_random_seed(int(seed))
        data = {"image": np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())}
        if mask is not None:
            data["mask"] = mask.cpu().numpy()
        out = self.compose(**data)
        if out["image"].shape[:2] != data["image"].shape[:2]:
            raise ValueError(f"the albumentations pipeline changed the image size {data['image'].shape[:2]} -> {out['image'].shape[:2]}")
        return out

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        images = []
        for image, seed in zip(x, params["seed"].tolist()):
            out = self._run(image, seed)["image"]
            out = out[..., None] if out.ndim == 2 else out
            images.append(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1))
        return torch.stack(images).to(device=x.device, dtype=x.dtype) if images else x.clone()

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        # run the image pipeline again with the same seed so that geometric ops move the mask alike
        if "image_like" not in params:
            raise ValueError("Albumentations needs the image to move a mask: call it with (image, mask)")
        masks = [torch.from_numpy(np.ascontiguousarray(self._run(image, seed, m)["mask"]))
                 for image, seed, m in zip(params["image_like"], params["seed"].tolist(), mask)]
        return torch.stack(masks).to(device=mask.device, dtype=mask.dtype)

    def _run_image(self, image: Any, generator: torch.Generator | None) -> tuple[torch.Tensor, Params, bool]:
        out, params, single = super()._run_image(image, generator)
        batch = image[None] if single else image
        params["image_like"] = batch.as_subclass(torch.Tensor)
        return out, params, single
