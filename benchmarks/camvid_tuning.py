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

``--confirm NAME`` is the last step, taken once one variant has been chosen on val: it scores that
variant's study models on **test** (running the study first for seeds it lacks, so every test row
has its val row) and compares them, paired by seed, with the ablation's CE and MS+CS test scores.
The models are trained on ``train`` only and nothing is picked on test. Only one variant goes to test,
unless a later round of the study chose another one on val (``--next-round``); every variant on test
is reported, in the order it was chosen.

    python benchmarks/camvid_tuning.py --data-root ../shared/data/camvid              # run what is missing
    python benchmarks/camvid_tuning.py --report                                        # tables only
    python benchmarks/camvid_tuning.py --confirm weight_0.3 --seeds 0 1 2 3 4          # chosen variant on test
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from camvid_ablation import (
    LABELS,
    ROOT,
    append_result,
    evaluate,
    load_results,
    paired_by_seed,
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
    "weight_0.03": ("mscs", ["--model.contrast.weight", "0.03"], "loss weight 0.03"),
    "weight_0.3": ("mscs", ["--model.contrast.weight", "0.3"], "loss weight 0.3"),
    "weight_1.0": ("mscs", ["--model.contrast.weight", "1.0"], "loss weight 1.0"),
    "tau_0.2": ("mscs", ["--model.contrast.temperature", "0.2", "--model.contrast.cross_scale_temperature", "0.2"],
                "temperature 0.2 (within and cross scale)"),
    "warmup_250": ("mscs", ["--model.contrast.warmup_steps", "250"],
                   "contrastive weight ramped from 0 over the first 250 steps"),
    "paper_caps": ("mscs", ["--model.contrast.max_views", "2500", "--model.contrast.max_total", "10000"],
                   "the paper's sampling caps (2500 views, 10000 anchors per scale)"),
    "per_image": ("mscs", ["--model.contrast.cross_image", "false"],
                  "positives and negatives from the anchor's own image only (no cross-image contrast)"),
    "backbone_taps": ("mscs", ["--model.model_kwargs", '{"embed_indices": [0, 1, 2, 3]}'],
                      "contrast the encoder stages (24/40/112/320 ch) instead of the FPN levels"),
}
HEAD = "fpn"


def recipe(r) -> tuple:
    """(steps, crop, batch) of a result row or of the parsed arguments."""
    r = r if isinstance(r, dict) else vars(r)
    return r["steps"], tuple(r["crop"]), r["batch"]


def same_recipe(row: dict | None, args) -> bool:
    """Whether a result row was made with this invocation's steps, crops and batch size."""
    return row is not None and recipe(row) == recipe(args)


def confirm_order(rows: dict[str, dict]) -> list[str]:
    """The variants that have test rows, in the order they went to test."""
    return list(dict.fromkeys(r["variant"] for r in rows.values()))


def study_dir(args, name: str, seed: int) -> Path:
    return Path(args.tuning_out) / name / f"seed{seed}"


def run_variant(args, name: str, seed: int, ablation: dict[str, dict]) -> dict:
    setting, extra, _ = VARIANTS[name]
    if not extra:  # the ablation's own run, if it is finished with this recipe: score it on val
        done = ablation.get(run_key(HEAD, setting, seed, "test"))
        out = run_dir(args, HEAD, setting, seed)
        ckpt = out / "checkpoints" / "last.ckpt"
        if same_recipe(done, args) and ckpt.exists():
            base = train_args(args, HEAD, setting, seed, out)
            return {"fit_seconds": done["fit_seconds"], "reused": os.path.relpath(out, ROOT),
                    **evaluate(args, base, ckpt)}
    # otherwise train it here (never in the ablation's directory, which the ablation may be using)
    return run_one(args, HEAD, setting, seed, out=study_dir(args, name, seed), extra=extra)


def study_run(args, name: str, seed: int, results: dict[str, dict], path: Path) -> dict:
    """Train (or reuse) one variant and seed, score it on val, append the row to ``path``."""
    key = f"{HEAD}/{name}/seed{seed}/val"
    ablation = load_results(Path(args.ablation_results))
    print(f"[{time.strftime('%H:%M:%S')}] {key}: {VARIANTS[name][2]}", flush=True)
    args.eval_split = "val"
    row = {"key": key, "variant": name, "seed": seed, "split": "val", "steps": args.steps,
           "crop": args.crop, "batch": args.batch, **run_variant(args, name, seed, ablation)}
    append_result(path, results, row)
    print(f"[{time.strftime('%H:%M:%S')}] {key}: val mIoU {row['miou']:.2f}", flush=True)
    return row


def confirm_variant(args, name: str, seed: int, study: dict) -> dict:
    """Test scores of the study's final model of ``name`` for ``seed`` (``study`` is its val row)."""
    out = study_dir(args, name, seed)
    ckpt = out / "checkpoints" / "last.ckpt"
    if not same_recipe(study, args) or not ckpt.exists():
        raise SystemExit(f"{out}: no finished study run of {name} seed {seed} with steps {args.steps}, "
                         f"crop {args.crop}, batch {args.batch} (its val row: {study and study['key']})")
    args.eval_split = "test"
    base = train_args(args, HEAD, VARIANTS[name][0], seed, out, VARIANTS[name][1])
    kept = {k: study[k] for k in ("fit_seconds", "threads") if k in study}
    return {**kept, "reused": os.path.relpath(out, ROOT), **evaluate(args, base, ckpt)}


def confirm_report(confirm: dict[str, dict], ablation: dict[str, dict], tuning: dict[str, dict]) -> str:
    """Test mIoU of the variant chosen on val next to the ablation's CE and MS+CS, paired by seed.

    All rows must share one recipe (steps, crop, batch); ablation rows of other heads or splits are ignored.
    """
    lines = [f"### {HEAD} + tf_efficientnet_lite0, test mIoU (%) of the variant chosen on val", "",
             "| model | val mIoU (seeds) | test runs | test mean | std | test seeds | vs CE, paired by seed "
             "| vs MS+CS, paired by seed |", "|---|---|---|---|---|---|---|---|"]
    if not confirm:
        return "\n".join(lines + ["", "(no variant scored on test yet)", ""])
    recipes = {recipe(r) for r in confirm.values()}
    if len(recipes) > 1:
        raise SystemExit(f"test rows of several recipes (steps, crop, batch): {sorted(recipes)}")
    used = recipes.pop()
    val = {}
    for r in tuning.values():
        if r.get("split") == "val" and recipe(r) == used:
            val.setdefault(r["variant"], []).append(r["miou"])
    ref = {s: {r["seed"]: r["miou"] for r in ablation.values()
               if r.get("head") == HEAD and r["setting"] == s and r["split"] == "test" and recipe(r) == used}
           for s in ("ce", "mscs")}
    chosen = confirm_order(confirm)
    names = ["ce", "mscs"] + chosen
    for name in names:
        test = dict(ref[name]) if name in ref else {
            r["seed"]: r["miou"] for r in confirm.values() if r["variant"] == name}
        if not test:
            continue
        seeds = sorted(test)
        vals = [test[s] for s in seeds]
        v = val.get(name, [])
        vtxt = f"{statistics.mean(v):.2f} ({len(v)})" if v else "-"
        std = f"{statistics.stdev(vals):.2f}" if len(vals) > 1 else "-"
        label = LABELS.get(name) or f"`{name}`: {VARIANTS[name][2] if name in VARIANTS else '?'}"
        if name in chosen and len(chosen) > 1:
            label += f" (round {chosen.index(name) + 1})"
        vs = ["-" if name in ("ce", other) else paired_by_seed(test, ref[other]) for other in ("ce", "mscs")]
        lines.append(f"| {label} | {vtxt} | {len(vals)} | {statistics.mean(vals):.2f} | {std} | "
                     + ", ".join(f"{s}: {test[s]:.2f}" for s in seeds) + f" | {vs[0]} | {vs[1]} |")
    lines += ["", "Every model is trained on `train` only. Each variant was chosen as the best of the study's variants "
              "on val before it was scored on test, so its val mean is biased upwards by that choice; the p-values "
              "are not corrected for the number of variants tried."]
    if len(chosen) > 1:
        lines.append("Round k was chosen on val after the test scores of rounds 1..k-1 were known.")
    lines.append("")
    return "\n".join(lines)


def report(results: dict[str, dict]) -> str:
    rows = {n: sorted((r for r in results.values() if r["variant"] == n), key=lambda r: r["seed"]) for n in VARIANTS}
    by_seed = {n: {r["seed"]: r["miou"] for r in rs} for n, rs in rows.items()}

    def delta(name: str, ref: str) -> str:
        seeds = sorted(set(by_seed[name]) & set(by_seed[ref]))
        if not seeds or name == ref:
            return "-"
        diffs = [by_seed[name][s] - by_seed[ref][s] for s in seeds]
        return f"{statistics.mean(diffs):+.2f} ({sum(d > 0 for d in diffs)}/{len(diffs)})"

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
    lines += ["", "Differences are means over the seeds both rows share (paired by seed), with the number of "
              "those seeds on which the variant is higher.", ""]
    return "\n".join(lines)


def confirm(args, tuning: dict[str, dict], tuning_path: Path, rows: dict[str, dict], path: Path) -> None:
    """``--confirm``: score the chosen variant's study models on test (one JSON line per run, resumable).

    Seeds the study has not run yet are run (and scored on val) first, so that every test row has its
    val row. Only one variant may go to test: scoring several and keeping the best would choose on test.
    """
    name = args.confirm
    if not any(r["variant"] == name for r in tuning.values()):
        raise SystemExit(f"--confirm {name}: the study has no val run of it; choose the variant on val first")
    order = confirm_order(rows)
    others = [v for v in order if v != name]
    if others and name not in order and not args.next_round:
        raise SystemExit(f"{path} already holds test runs of {others}: only the variant chosen on val goes to test. "
                         "If the study has since chosen another one on val, pass --next-round (both are reported, "
                         "in the order they were chosen)")
    round_ = order.index(name) + 1 if name in order else len(order) + 1
    for seed in args.seeds:
        key = f"{HEAD}/{name}/seed{seed}/test"
        if key in rows:
            continue
        study = tuning.get(f"{HEAD}/{name}/seed{seed}/val") or study_run(args, name, seed, tuning, tuning_path)
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {VARIANTS[name][2]}", flush=True)
        row = {"key": key, "variant": name, "round": round_, "seed": seed, "split": "test", "steps": args.steps,
               "crop": args.crop, "batch": args.batch, **confirm_variant(args, name, seed, study)}
        append_result(path, rows, row)
        print(f"[{time.strftime('%H:%M:%S')}] {key}: test mIoU {row['miou']:.2f}", flush=True)


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
    p.add_argument("--report", action="store_true", help="print the tables and exit")
    p.add_argument("--docs", default=None, help="also write the tables into this Markdown file (between markers)")
    p.add_argument("--confirm", default=None, choices=[n for n in VARIANTS if n not in ("ce", "mscs")],
                   help="score this variant (chosen on val) on test for --seeds, instead of running the study")
    p.add_argument("--next-round", action="store_true",
                   help="allow --confirm of a variant when another one is already on test (a later val choice)")
    p.add_argument("--confirm-results", default=str(ROOT / "docs" / "results" / "camvid_tuning_test.jsonl"))
    args = p.parse_args()
    results_path, confirm_path = Path(args.results), Path(args.confirm_results)
    results, confirmed = load_results(results_path), load_results(confirm_path)
    if args.confirm and not args.report:
        confirm(args, results, results_path, confirmed, confirm_path)
    elif not args.report:
        for seed in args.seeds:
            for name in args.variants:
                if f"{HEAD}/{name}/seed{seed}/val" not in results:
                    study_run(args, name, seed, results, results_path)
    tables = {"TUNING": report(results)}
    if confirmed:
        tables["CONFIRM"] = confirm_report(confirmed, load_results(Path(args.ablation_results)), results)
    for name, text in tables.items():
        print(text)
        if args.docs:
            write_block(Path(args.docs), name, text)


if __name__ == "__main__":
    main()
