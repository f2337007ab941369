"""Figures for docs/results.md from the ablation's checkpoints: example predictions (image, ground
truth, CE, MS+CS) and per-scale t-SNEs of CE vs MS+CS, with a class-separability table.

The t-SNEs sample test pixels class-balanced, as the loss does, at the four taps the projectors
read: the head's maps for CE (it has no projectors) and for MS+CS, plus the MS+CS projector
embeddings. The table gives, per scale, the mean cosine silhouette of those points by class
(-1..1, higher = classes better separated) and the leave-one-out 10-NN class accuracy.

    python benchmarks/camvid_figures.py --data-root ../shared/data/camvid [--seed 0] [--head fpn]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
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
    p.add_argument("--tsne-images", type=int, default=8, help="test images sampled for the t-SNEs")
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
    tsne_figures(ckpt, args.data_root, out, args.head, args.tsne_images)


def tsne_figures(ckpt: dict[str, Path], data_root: str, out: Path, head: str, num_images: int) -> None:
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import normalize

    from scalecontrast.data import eval_transforms, get_dataset
    from scalecontrast.engine import load_module
    from scalecontrast.engine.inference import sample_embeddings
    from scalecontrast.viz import tsne_figure

    ds = get_dataset("camvid", data_root, "test", transform=eval_transforms(mean=None, std=None))
    rows = []
    for name, setting, source in (("CE", "ce", "features"), ("CE + MS + CS", "mscs", "features"),
                                  ("CE + MS + CS", "mscs", "projector")):
        module = load_module(ckpt[setting])
        feats, labels, strides = sample_embeddings(module, ds, num_images=num_images, views=40, source=source)
        path = out / f"camvid_{head}_{setting}_{source}_tsne.png"
        titles = [f"{name}, {source} {s + 1} (stride {st})" for s, st in enumerate(strides)]
        tsne_figure(feats, labels, module.class_names, module.palette, path, titles=titles)
        print(f"wrote {path}")
        cells = []
        for f, y in zip(feats, labels):
            z = normalize(f)
            if len(np.unique(y)) < 2:
                cells.append("-")
                continue
            sil = silhouette_score(z, y, metric="cosine")
            knn = KNeighborsClassifier(n_neighbors=10).fit(z, y)
            idx = knn.kneighbors(return_distance=False)  # X=None: each point's neighbours without itself
            votes = y[idx]
            acc = float((np.array([np.bincount(v).argmax() for v in votes]) == y).mean())
            cells.append(f"{sil:.3f} / {100 * acc:.1f}")
        rows.append(f"| {name} | {source} | " + " | ".join(cells) + " |")
    n = len(strides)
    table = "\n".join(["| model | maps | " + " | ".join(f"scale {s + 1} (stride {st})" for s, st in enumerate(strides))
                       + " |", "|---|---|" + "---|" * n, *rows])
    print(f"\nClass separability of test pixels ({num_images} images, 40 per image and class): "
          "cosine silhouette / 10-NN accuracy (%)\n\n" + table)


if __name__ == "__main__":
    main()
