"""Figures for docs/results.md from the ablation's checkpoints: example predictions (image, ground
truth, CE, MS+CS) and the per-scale t-SNE of the MS+CS model's projector embeddings.

    python benchmarks/camvid_figures.py --data-root ../shared/data/camvid [--seed 0] [--head fpn]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def predictions_figure(ce_ckpt: Path, mscs_ckpt: Path, data_root: str, out: Path, indices: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scalecontrast.data import eval_transforms, get_dataset
    from scalecontrast.engine import load_module
    from scalecontrast.viz.masks import colorize, to_uint8_image

    models = {"CE": load_module(ce_ckpt), "CE + MS + CS": load_module(mscs_ckpt)}
    ds = get_dataset("camvid", data_root, "test", transform=eval_transforms(mean=None, std=None))
    palette = next(iter(models.values())).palette
    fig, axes = plt.subplots(len(indices), 4, figsize=(16, 3.1 * len(indices)), squeeze=False)
    for row, i in enumerate(indices):
        item = ds[i]
        panels = [("image " + item["stem"], to_uint8_image(item["image"])),
                  ("ground truth", colorize(item["mask"], palette))]
        with torch.no_grad():
            for name, module in models.items():
                pred = module.predict_probs(item["image"][None], out_size=item["mask"].shape).argmax(1)[0]
                correct = ((pred == item["mask"]) | (item["mask"] == 255)).float().mean().item()
                panels.append((f"{name} (pixel acc. {100 * correct:.1f}%)", colorize(pred, palette)))
        for ax, (title, img) in zip(axes[row], panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "ablation"))
    p.add_argument("--head", default="fpn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, nargs="+", default=[10, 60, 120, 200])
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = p.parse_args()
    run_dir = Path(args.runs) / args.head
    ckpt = {s: run_dir / s / f"seed{args.seed}" / "checkpoints" / "last.ckpt" for s in ("ce", "mscs")}
    missing = [str(c) for c in ckpt.values() if not c.is_file()]
    if missing:
        raise SystemExit(f"missing checkpoints (run benchmarks/camvid_ablation.py first): {missing}")
    out = Path(args.out)
    figure = out / f"camvid_{args.head}_predictions.png"
    predictions_figure(ckpt["ce"], ckpt["mscs"], args.data_root, figure, args.images)
    subprocess.run([sys.executable, "-m", "scalecontrast.cli", "embed", "--ckpt_path", str(ckpt["mscs"]),
                    "--data.root", args.data_root, "--split", "test", "--num_images", "8",
                    "--output", str(out / f"camvid_{args.head}_mscs_tsne.png")], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
