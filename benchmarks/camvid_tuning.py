"""CamVid tuning study on ``val``: why does (or doesn't) MS+CS beat CE, one knob at a time.

Every variant is the CamVid MS+CS recipe of ``camvid_ablation.py`` (FPN + EfficientNet-Lite0,
same steps, crops, batch and seeds) with one change: the contrastive loss weight, the
temperature, a linear warm-up of the contrastive term, the paper's sampling caps, or contrast
restricted to each image (no cross-image contrast: the batch's other images are not gathered into
the contrast set), or the taps (encoder stages instead of FPN levels). Models are trained on ``train`` and
scored on **val** (never on test). The CE and MS+CS rows reuse the ablation's trained runs
(``runs/ablation/fpn/{ce,mscs}/seed*``) when they are finished with the same recipe, and are
trained under ``--tuning-out`` otherwise.

Each finished run is appended to ``--results`` (JSON lines) and skipped when the script is
started again; an interrupted run resumes from its ``last.ckpt``.

``--confirm NAME`` is the last step, taken once a variant has been chosen on val: it scores that
variant's final models on **test** (training the seeds the study has not trained yet, in the same
directories) and compares them, paired by seed, with the ablation's CE and MS+CS test scores. The
val models are trained on ``train`` only, so scoring them on test picks nothing on test.

    python benchmarks/camvid_tuning.py --data-root ../shared/data/camvid              # run what is missing
    python benchmarks/camvid_tuning.py --report                                        # tables only
    python benchmarks/camvid_tuning.py --confirm weight_0.3 --seeds 0 1 2 3 4          # chosen variant on test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from camvid_ablation import (
    LABELS,
    ROOT,
    evaluate,
    load_results,
    paired_delta,
    run_dir,
    run_key,
    run_one,
    train_args,
    write_block,
)

# name -> (CamVid config setting, extra CLI arguments, what it tests)
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "ce": ("ce", [], "CE only"),
    "mscs": ("mscs", [], "CE + MS + CS as in the ablation (weight 0.1, tau 0.1, caps 500/2000)"),
    "weight_0.03": ("mscs", ["--model.contrastive_weight", "0.03"], "loss weight 0.03"),
    "weight_0.3": ("mscs", ["--model.contrastive_weight", "0.3"], "loss weight 0.3"),
    "tau_0.2": ("mscs", ["--model.temperature", "0.2", "--model.cross_scale_temperature", "0.2"],
                "temperature 0.2 (within and cross scale)"),
    "warmup_250": ("mscs", ["--model.contrastive_warmup_steps", "250"],
                   "contrastive weight ramped from 0 over the first 250 steps"),
    "paper_caps": ("mscs", ["--model.max_views", "2500", "--model.max_total", "10000"],
                   "the paper's sampling caps (2500 views, 10000 anchors per scale)"),
    "per_image": ("mscs", ["--model.cross_image", "false"],
                  "positives and negatives from the anchor's own image only (no cross-image contrast)"),
    "backbone_taps": ("mscs", ["--model.model_kwargs", '{"embed_from": "backbone"}'],
                      "contrast the encoder stages (24/40/112/320 ch) instead of the FPN levels"),
}
HEAD = "fpn"


def run_variant(args, name: str, seed: int, ablation: dict[str, dict]) -> dict:
    setting, extra, _ = VARIANTS[name]
    if not extra:  # the ablation's own run, if it is finished with this recipe: score it on val
        done = ablation.get(run_key(HEAD, setting, seed, "test"))
        out = run_dir(args, HEAD, setting, seed)
        ckpt = out / "checkpoints" / "last.ckpt"
        same = done is not None and (done["steps"], list(done["crop"]), done["batch"]) == (
            args.steps, list(args.crop), args.batch)
        if same and ckpt.exists():
            base = train_args(args, HEAD, setting, seed, out)
            return {"fit_seconds": done["fit_seconds"], "reused": str(out.relative_to(ROOT)),
                    **evaluate(args, base, ckpt)}
    # otherwise train it here (never in the ablation's directory, which the ablation may be using)
    return run_one(args, HEAD, setting, seed, out=Path(args.tuning_out) / name / f"seed{seed}", extra=extra)


def confirm_variant(args, name: str, seed: int, tuning: dict[str, dict]) -> dict:
    """Test scores of ``name``'s final model for ``seed``: the study's model if it is finished with
    this recipe, else trained here (in the study's directory for that variant and seed)."""
    out = Path(args.tuning_out) / name / f"seed{seed}"
    ckpt = out / "checkpoints" / "last.ckpt"
    done = tuning.get(f"{HEAD}/{name}/seed{seed}/val")
    same = done is not None and (done["steps"], list(done["crop"]), done["batch"]) == (
        args.steps, list(args.crop), args.batch)
    if same and ckpt.exists():
        base = train_args(args, HEAD, VARIANTS[name][0], seed, out, VARIANTS[name][1])
        extra = {k: done[k] for k in ("fit_seconds", "threads") if k in done}
        return {**extra, "reused": str(out.relative_to(ROOT)), **evaluate(args, base, ckpt)}
    return run_one(args, HEAD, VARIANTS[name][0], seed, out=out, extra=VARIANTS[name][1])


def _paired(test: dict[int, float], ref: dict[int, float]) -> str:
    shared = sorted(set(test) & set(ref))
    return paired_delta([test[s] for s in shared], [ref[s] for s in shared]) if shared else "-"


def confirm_report(confirm: dict[str, dict], ablation: dict[str, dict], tuning: dict[str, dict]) -> str:
    """Test mIoU of the variant(s) chosen on val next to the ablation's CE and MS+CS, paired by seed."""
    lines = [f"### {HEAD} + tf_efficientnet_lite0, test mIoU (%) of the variant chosen on val", "",
             "| model | val mIoU (seeds) | test runs | test mean | std | test seeds | vs CE, paired by seed "
             "| vs MS+CS, paired by seed |", "|---|---|---|---|---|---|---|---|"]
    val = {n: [r["miou"] for r in tuning.values() if r["variant"] == n] for n in VARIANTS}
    ref = {s: {r["seed"]: r["miou"] for r in ablation.values()
               if r.get("head") == HEAD and r["setting"] == s and r["split"] == "test"} for s in ("ce", "mscs")}
    names = ["ce", "mscs"] + sorted({r["variant"] for r in confirm.values()})
    for name in names:
        test = ({s: m for s, m in ref[name].items()} if name in ref else
                {r["seed"]: r["miou"] for r in confirm.values() if r["variant"] == name})
        if not test:
            continue
        seeds = sorted(test)
        vals = [test[s] for s in seeds]
        v = val[name]
        vtxt = f"{statistics.mean(v):.2f} ({len(v)})" if v else "-"
        std = f"{statistics.stdev(vals):.2f}" if len(vals) > 1 else "-"
        label = LABELS.get(name, f"`{name}`: {VARIANTS[name][2]}")
        vs = ["-" if name in ("ce", other) else _paired(test, ref[other]) for other in ("ce", "mscs")]
        lines.append(f"| {label} | {vtxt} | {len(vals)} | {statistics.mean(vals):.2f} | {std} | "
                     + ", ".join(f"{s}: {test[s]:.2f}" for s in seeds) + f" | {vs[0]} | {vs[1]} |")
    lines += ["", "Every model is trained on `train`; the variant was chosen by its val mIoU (the study above) "
              "before it was scored on test.", ""]
    return "\n".join(lines)


def report(results: dict[str, dict]) -> str:
    rows = {n: sorted((r for r in results.values() if r["variant"] == n), key=lambda r: r["seed"]) for n in VARIANTS}
    by_seed = {n: {r["seed"]: r["miou"] for r in rs} for n, rs in rows.items()}

    def delta(name: str, ref: str) -> str:
        seeds = sorted(set(by_seed[name]) & set(by_seed[ref]))
        if not seeds or name == ref:
            return "-"
        diffs = [by_seed[name][s] - by_seed[ref][s] for s in seeds]
        return f"{statistics.mean(diffs):+.2f}"

    lines = [f"### {HEAD} + tf_efficientnet_lite0, val mIoU (%), one change at a time", "",
             "| variant | change | runs | mean | std | seeds | vs CE | vs MS+CS |", "|---|---|---|---|---|---|---|---|"]
    for name, rs in rows.items():
        if not rs:
            continue
        vals = [r["miou"] for r in rs]
        std = f"{statistics.stdev(vals):.2f}" if len(vals) > 1 else "-"
        seeds = ", ".join(f"{r['seed']}: {r['miou']:.2f}" for r in rs)
        lines.append(f"| `{name}` | {VARIANTS[name][2]} | {len(vals)} | {statistics.mean(vals):.2f} | {std} | "
                     f"{seeds} | {delta(name, 'ce')} | {delta(name, 'mscs')} |")
    lines += ["", "Differences are means over the seeds both rows share (paired by seed).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "runs" / "ablation"), help="the ablation's run directory")
    p.add_argument("--tuning-out", default=str(ROOT / "runs" / "tuning"))
    p.add_argument("--ablation-results", default=str(ROOT / "docs" / "results" / "camvid_ablation.jsonl"))
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "camvid_tuning.jsonl"))
    p.add_argument("--report", action="store_true", help="print the table and exit")
    p.add_argument("--docs", default=None, help="also write the table into this Markdown file (between markers)")
    p.add_argument("--confirm", default=None, choices=[n for n in VARIANTS if n not in ("ce", "mscs")],
                   help="score this variant (chosen on val) on test for --seeds, after the study")
    p.add_argument("--confirm-results", default=str(ROOT / "docs" / "results" / "camvid_tuning_test.jsonl"))
    args = p.parse_args()
    if args.confirm or (args.report and Path(args.confirm_results).exists()):
        confirm(args)
        if args.confirm:
            return
    args.eval_split = "val"
    results_path = Path(args.results)
    results = load_results(results_path)
    if not args.report:
        for seed in args.seeds:
            for name in args.variants:
                key = f"{HEAD}/{name}/seed{seed}/val"
                if key in results:
                    continue
                ablation = load_results(Path(args.ablation_results))
                print(f"[{time.strftime('%H:%M:%S')}] {key}: {VARIANTS[name][2]}", flush=True)
                row = {"key": key, "variant": name, "seed": seed, "split": "val", "steps": args.steps,
                       "crop": args.crop, "batch": args.batch, **run_variant(args, name, seed, ablation)}
                results[key] = row
                results_path.parent.mkdir(parents=True, exist_ok=True)
                with open(results_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[{time.strftime('%H:%M:%S')}] {key}: val mIoU {row['miou']:.2f}", flush=True)
    text = report(results)
    print(text)
    if args.docs:
        write_block(Path(args.docs), "TUNING", text)


def confirm(args) -> None:
    """``--confirm``: the chosen variant's final models on test (resumable, one JSON line per run)."""
    args.eval_split = "test"
    path = Path(args.confirm_results)
    rows = load_results(path)
    tuning = load_results(Path(args.results))
    if args.confirm and not args.report:
        for seed in args.seeds:
            key = f"{HEAD}/{args.confirm}/seed{seed}/test"
            if key in rows:
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {key}: {VARIANTS[args.confirm][2]}", flush=True)
            row = {"key": key, "variant": args.confirm, "seed": seed, "split": "test", "steps": args.steps,
                   "crop": args.crop, "batch": args.batch, **confirm_variant(args, args.confirm, seed, tuning)}
            rows[key] = row
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{time.strftime('%H:%M:%S')}] {key}: test mIoU {row['miou']:.2f}", flush=True)
    text = confirm_report(rows, load_results(Path(args.ablation_results)), tuning)
    print(text)
    if args.docs:
        write_block(Path(args.docs), "CONFIRM", text)


if __name__ == "__main__":
    main()
