"""The report of a study: ``DIR/results.md`` and ``DIR/per_class_gains.png``, from the storage alone."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from scalecontrast.study.runner import completed, open_study, read_state, tie_rule, trials_by_key, tune_table
from scalecontrast.study.spec import TUNED, StudySpec, setting_label
from scalecontrast.study.stats import mean_std, paired_stats

__all__ = ["arm_scores", "write_report"]

GAINS_FIGURE = "per_class_gains.png"


def _fmt(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def arm_scores(spec: StudySpec, by_key: dict[str, list]) -> dict[str, dict[int, Any]]:
    """``{arm: {seed: COMPLETE trial}}`` of the compare phase."""
    out: dict[str, dict[int, Any]] = {arm: {} for arm in spec.arms}
    for arm in spec.arms:
        for seed in spec.compare_seeds:
            t = completed(by_key.get(f"compare/{arm}/seed{seed}", []))
            if t is not None:
                out[arm][seed] = t
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _minutes(trials: list) -> str:
    secs = [t.user_attrs.get("fit_seconds") for t in trials if t.user_attrs.get("fit_seconds")]
    return f"{sum(secs) / len(secs) / 60:.1f}" if secs else "-"


def gains_figure(gains: dict[str, dict[str, float]], classes: list[str], path: Path, title: str) -> None:
    """Per-class mean paired gain of each arm over the reference (horizontal bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(gains)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(classes) * max(1, len(arms)) ** 0.5 + 1.5))
    height = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        ys = [c + (i - (len(arms) - 1) / 2) * height for c in range(len(classes))]
        ax.barh(ys, [gains[arm].get(name, 0.0) for name in classes], height=height, label=arm)
    ax.set_yticks(range(len(classes)), classes)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("IoU gain over the reference arm (points, mean over paired seeds)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def report_text(spec: StudySpec, study, *, figure: str | None = GAINS_FIGURE) -> tuple[str, dict]:
    """The Markdown report and the per-class gains it draws (``{arm: {class: gain}}``)."""
    state = read_state(spec, study)
    by_key = trials_by_key(study)
    ref = spec.reference_arm
    lines = [f"# Study `{spec.name}`", ""]
    lines += [f"- Spec: `{spec.path}`; recipe: " + " + ".join(f"`{c}`" for c in spec.config)
              + (f"; options for every trial: `{' '.join(spec.args)}`" if spec.args else ""),
              "- Arms: " + "; ".join(f"**{a}** = " + ("the setting chosen in the tune phase" if v == TUNED
                                                        else setting_label(spec.arm_setting(a)))
                                      for a, v in spec.arms.items()),
              f"- Each trial trains the recipe with its setting and seed (`--seed_everything`) and scores the "
              f"final checkpoint once: tune trials on `{spec.tune_split}`, compare trials on "
              f"`{spec.compare_split}`. mIoU in %." if spec.has_tune else
              f"- Each trial trains the recipe with its setting and seed (`--seed_everything`) and scores the "
              f"final checkpoint once on `{spec.compare_split}`. mIoU in %."]
    done = sum(1 for p in state.plans if state.state_of(p) == "done")
    total = len(state.plans) + len(state.waiting_for_choice)
    lines += [f"- Trials complete: {done} of {total}.", ""]

    if spec.has_tune:
        rows, tuned = tune_table(spec, by_key)
        lines += [f"## Tuning ({spec.tune_split}, seeds {', '.join(map(str, spec.tune_seeds))})", ""]
        tref = spec.tune_reference
        lines += ["| setting | runs | mean ± std | seeds | vs " + (tref or "-") + ", paired by seed |",
                  "|---|---|---|---|---|"]
        ref_scores = rows[0]["scores"] if tref else {}
        for r in rows:
            vals = list(r["scores"].values())
            ms = "-" if not vals else "{:.2f} ± {:.2f}".format(*mean_std(vals))
            seeds = ", ".join(f"{s}: {v:.2f}" for s, v in sorted(r["scores"].items()))
            name = tref if r["reference"] else setting_label(r["setting"])
            if r.get("chosen"):
                name = f"**{name}** (chosen)"
            ps = None if r["reference"] or not tref else paired_stats(r["scores"], ref_scores)
            vs = "-" if ps is None else (f"{ps.mean:+.2f} ± {ps.std:.2f}, better on {ps.wins}/{ps.n}"
                                         + (f", p = {_p(ps.p)}" if ps.p is not None else ""))
            lines.append(f"| {name} | {len(vals)} | {ms} | {seeds} | {vs} |")
        lines += ["", f"Rule: {tie_rule(spec)}."
                  + (f" The {tref} row is for reference only, it is not a candidate." if tref else "")
                  + f" No candidate is scored on `{spec.compare_split}` before the choice.", ""]
        lines.append(f"Chosen: **{setting_label(tuned)}**." if tuned is not None
                     else "Chosen: not yet (tune trials left).")
        lines.append("")

    scores = arm_scores(spec, by_key)
    ref_map = {s: t.value for s, t in scores[ref].items()}
    lines += [f"## Comparison ({spec.compare_split}, paired by seed against {ref})", ""]
    lines += ["| arm | setting | runs | mean ± std | seeds | vs " + ref + ": mean diff ± std | wins | p (paired t) "
              "| 95 % interval | training min/run |", "|---|---|---|---|---|---|---|---|---|---|"]
    gains: dict[str, dict[str, float]] = {}
    classes: list[str] = []
    for arm in spec.arms:
        trials = scores[arm]
        vals = {s: t.value for s, t in trials.items()}
        setting = spec.arm_setting(arm, state.tuned)
        label = ("not chosen yet" if setting is None else setting_label(setting))
        if spec.arms[arm] == TUNED and setting is not None:
            label = f"tuned: {label}"
        ms = "-" if not vals else "{:.2f} ± {:.2f}".format(*mean_std(list(vals.values())))
        seeds = ", ".join(f"{s}: {v:.2f}" for s, v in sorted(vals.items()))
        ps = None if arm == ref else paired_stats(vals, ref_map)
        if ps is None:
            diff = wins = p = ci = "-"
        else:
            diff = f"{ps.mean:+.2f} ± {ps.std:.2f}"
            wins = f"{ps.wins}/{ps.n}"
            p = _p(ps.p)
            ci = "-" if ps.ci95 is None else f"[{ps.ci95[0]:+.2f}, {ps.ci95[1]:+.2f}]"
        lines.append(f"| {arm} | {label} | {len(vals)} | {ms} | {seeds} | {diff} | {wins} | {p} | {ci} "
                     f"| {_minutes(list(trials.values()))} |")
        for t in trials.values():
            for name in t.user_attrs.get("per_class") or {}:
                if name not in classes:
                    classes.append(name)
    lines += ["", "p: two-sided paired t-test over the seeds both arms have (scipy.stats.ttest_rel), not corrected "
              "for the number of arms; 95 % interval: mean difference ± t(0.975, n − 1) · std / √n. "
              "Training min/run: wall minutes of each model's fit as it ran (threads as in the trials table, other "
              "load on the machine included), not a cost benchmark.", ""]

    if classes:
        lines += [f"## Per-class IoU ({spec.compare_split}, mean over seeds)", ""]
        others = [a for a in spec.arms if a != ref and scores[a]]
        head = ["class", *[a for a in spec.arms if scores[a]], *[f"{a} − {ref}" for a in others]]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in classes:
            cells = [name]
            for arm in spec.arms:
                if scores[arm]:
                    v = [t.user_attrs["per_class"].get(name) for t in scores[arm].values()]
                    v = [x for x in v if x is not None]
                    cells.append(_fmt(sum(v) / len(v)) if v else "-")
            for arm in others:
                mine = {s: t.user_attrs["per_class"].get(name) for s, t in scores[arm].items()}
                theirs = {s: t.user_attrs["per_class"].get(name) for s, t in scores[ref].items()}
                ps = paired_stats({s: v for s, v in mine.items() if v is not None},
                                  {s: v for s, v in theirs.items() if v is not None})
                cells.append("-" if ps is None else f"{ps.mean:+.2f} ({ps.wins}/{ps.n})")
                if ps is not None:
                    gains.setdefault(arm, {})[name] = ps.mean
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Gains: mean paired difference over the seeds both arms have (wins out of pairs).", ""]
        if gains and figure:
            lines += [f"![per-class gains over {ref}]({figure})", ""]

    lines += ["## Trials", "",
              "| trial | key | " + "split | mIoU | steps | commit | threads | config hash | training min |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(by_key, key=lambda k: min(t.number for t in by_key[k])):
        t = completed(by_key[key])
        if t is None:
            continue
        a = t.user_attrs
        commits = a.get("commit") or []
        commits = commits if isinstance(commits, list) else [commits]
        threads = a.get("threads") or []
        threads = threads if isinstance(threads, list) else [threads]
        secs = a.get("fit_seconds")
        lines.append(f"| {t.number} | {key} | {a.get('split')} | {t.value:.2f} | {a.get('steps', '-')} "
                     f"| {', '.join(map(str, commits)) or '-'} | {', '.join(map(str, threads)) or '-'} "
                     f"| {a.get('config_hash') or '-'} | {secs / 60:.1f} |" if secs else
                     f"| {t.number} | {key} | {a.get('split')} | {t.value:.2f} | {a.get('steps', '-')} "
                     f"| {', '.join(map(str, commits)) or '-'} | {', '.join(map(str, threads)) or '-'} "
                     f"| {a.get('config_hash') or '-'} | - |")
    notes: dict[str, list[int]] = {}
    for ts in by_key.values():
        t = completed(ts)
        if t is not None and t.user_attrs.get("note"):
            notes.setdefault(t.user_attrs["note"], []).append(t.number)
    if notes:
        lines += ["", "Notes:", ""] + [f"- Trial{'s' if len(n) > 1 else ''} {', '.join(map(str, sorted(n)))}: {text}"
                                       for text, n in notes.items()]
    return "\n".join(lines) + "\n", {"gains": gains, "classes": classes}


def write_report(spec: StudySpec, output: str | Path, *, storage: str | None = None) -> Path:
    """``scalecontrast study report``: ``output/results.md`` (+ ``per_class_gains.png``); nothing else is
    written. Returns the Markdown file's path."""
    out = Path(output)
    study = open_study(spec, storage, heartbeat=None, create=False)
    text, extra = report_text(spec, study)
    out.mkdir(parents=True, exist_ok=True)
    if extra["gains"]:
        gains_figure(extra["gains"], extra["classes"], out / GAINS_FIGURE,
                     f"{spec.name}: per-class {spec.compare_split} IoU gain over {spec.reference_arm}")
    path = out / "results.md"
    _atomic_write(path, text.encode())
    return path


def trial_rows(spec: StudySpec, study) -> list[dict]:
    """The complete trials as plain rows (for scripts): key, value and user attributes."""
    return [{"number": t.number, "value": t.value, **json.loads(json.dumps(t.user_attrs, default=str))}
            for ts in trials_by_key(study).values() if (t := completed(ts)) is not None]
