"""Parameter counts of scalecontrast's head/backbone pairs, as a Markdown table.

Models are built on the meta device (no memory, no weights), so this runs in seconds:

    python benchmarks/param_counts.py            # the table for docs/models.md
    python benchmarks/param_counts.py --check    # also fail if a published count is missed by > 5%

"Params" excludes the projectors (training-only); "Projectors" is their extra size with embed_dim=256.
"""

from __future__ import annotations

import argparse
import sys

import torch

from scalecontrast.losses import ContrastiveHead
from scalecontrast.models import create_model

# (head, backbone, classes, published params in millions or None, source of the published number)
CONFIGS = [
    ("deeplabv3", "resnet50", 19, None, ""),
    ("deeplabv3", "resnet101", 19, None, ""),
    ("hrnet", "hrnet_w18", 19, None, ""),
    ("hrnet", "hrnet_w48", 19, 65.9, "HRNetV2-W48, Wang et al. TPAMI 2020"),
    ("ocrnet", "hrnet_w48", 150, 70.3, "HRNetV2-W48 + OCR, Yuan et al. ECCV 2020"),
    ("ocrnet", "resnet101", 150, None, ""),
    ("upernet", "swin_tiny_patch4_window7_224", 150, 60.0, "Swin-T UPerNet, Liu et al. ICCV 2021"),
    ("upernet", "swin_small_patch4_window7_224", 150, 81.0, "Swin-S UPerNet, Liu et al. ICCV 2021"),
    ("upernet", "swin_base_patch4_window7_224", 150, 121.0, "Swin-B UPerNet, Liu et al. ICCV 2021"),
    ("upernet", "convnext_tiny", 150, 60.0, "ConvNeXt-T UPerNet, Liu et al. CVPR 2022"),
    ("upernet", "resnet50", 150, None, ""),
    ("upernet", "resnet101", 150, None, ""),
    ("fpn", "tf_efficientnet_lite0", 11, None, ""),
    ("fpn", "resnet18", 11, None, ""),
]


def count(head: str, backbone: str, classes: int) -> tuple[int, int]:
    """(model parameters, projector parameters of its ContrastiveHead) for ``create_model(head, backbone,
    classes)``; the projectors are training-only and never part of the model."""
    with torch.device("meta"):
        model = create_model(head, backbone, classes)
        head_ = ContrastiveHead(model.feature_channels, embed_dim=256)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in head_.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a published count is missed by > 5%%")
    args = parser.parse_args(argv)
    print("| Head | Backbone | Classes | Params (M) | Projectors (M) | Published (M) | Difference |")
    print("|---|---|---:|---:|---:|---:|---:|")
    failures = []
    for head, backbone, classes, published, source in CONFIGS:
        params, proj = count(head, backbone, classes)
        ref, diff = "", ""
        if published is not None:
            rel = params / (published * 1e6) - 1
            ref, diff = f"{published:.1f} [{source}]", f"{rel:+.1%}"
            if abs(rel) > 0.05:
                failures.append(f"{head}+{backbone}: {params / 1e6:.1f}M vs {published}M")
        print(f"| {head} | {backbone} | {classes} | {params / 1e6:.1f} | {proj / 1e6:.2f} | {ref} | {diff} |")
    if failures:
        print("\nmore than 5% off: " + "; ".join(failures), file=sys.stderr)
    return 1 if args.check and failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
