"""Benchmark: an MAE encoder step on the visible tokens only vs the same step on all tokens.

He et al. (MAE, CVPR 2022) encode only the visible 25% of the patches and report 2.8-4.1x faster
pre-training. This runs ``pipelines.train.mae.encoder_step_ratio`` -- one forward + backward of
the same torchvision ViT encoder on the same batch, with 75% of the tokens masked out and with
none -- timed alternately (minimum over the rounds), and prints both times and their ratio
(target <= 0.4 at a 75% mask).

Usage::

    python benchmarks/train_mae.py                       # ViT-tiny-like encoder at 224 px, patch 16, batch 16
    python benchmarks/train_mae.py --arch vit_b_16 --batch 8 --steps 3
    python benchmarks/train_mae.py --device cuda --arch vit_b_16 --batch 64
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

# benchmarks/augment.py would shadow the augment package: keep this folder off the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
from pipelines.train.mae import encoder_step_ratio  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="tiny", help="tiny or a torchvision ViT name (vit_b_16, ...)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=16, help="tiny only")
    parser.add_argument("--depth", type=int, default=6, help="tiny only")
    parser.add_argument("--hidden-dim", type=int, default=192, help="tiny only")
    parser.add_argument("--heads", type=int, default=3, help="tiny only")
    parser.add_argument("--mlp-dim", type=int, default=768, help="tiny only")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (each: one masked and one full step)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = encoder_step_ratio(arch=args.arch, image_size=args.image_size, patch_size=args.patch_size, depth=args.depth,
                             hidden_dim=args.hidden_dim, num_heads=args.heads, mlp_dim=args.mlp_dim,
                             batch_size=args.batch, mask_ratio=args.mask_ratio, steps=args.steps, device=args.device)
    print(f"MAE encoder step, {args.arch} at {args.image_size} px, batch {args.batch}, {args.device}, "
          f"{torch.get_num_threads()} threads, mask ratio {args.mask_ratio}")
    print(f"{'tokens':>22} {'seconds/step':>14}")
    print(f"{'visible only':>12} {int(out['visible_tokens']):>9} {out['visible_s']:>14.4f}")
    print(f"{'all tokens':>12} {int(out['all_tokens']):>9} {out['all_s']:>14.4f}")
    print(f"ratio visible/all: {out['ratio']:.3f} (target <= 0.4; speed-up {1 / out['ratio']:.2f}x)")
    return out


if __name__ == "__main__":
    main()
