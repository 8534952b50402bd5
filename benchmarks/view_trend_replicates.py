"""Several replicates of the view-trend study read together: how much of the trend survives a new run?

    python benchmarks/view_trend_replicates.py benchmarks/results/view_trend_cpu*.json \\
        --out benchmarks/results/view_trend_replicates

Each input is the JSON of one ``view_trend_study.py`` run (one seed: its own scenes, initialisation and
training). Within a run, the gap (ZPressor minus baseline) carries a standard error over its test scenes;
that error says nothing about how a second training run would differ. Across runs, the spread of the
per-run results does: this script reports the mean over runs with the standard error between runs, for
the PSNR gap at every view count and for the gap's change from the fewest to the most views. Writes
``<out>.json`` and ``<out>.png`` (gap against views per run, their mean, and the paper's full-scale gap
for direction only) and prints Markdown.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from view_trend_study import mean_and_se

from zpressor_ns.paper_reference import paper_tables


def load_run(path: Path) -> dict:
    study = json.loads(Path(path).read_text())
    gaps = {row["views"]: (row["psnr"], row["psnr_se"]) for row in study["gap_zpressor_minus_baseline"]}
    change = study["gap_change"]
    return {
        "file": str(path),
        "seed": study["settings"]["seed"],
        "gap": gaps,
        "change": (change["psnr"], change["psnr_se"]),
        "change_views": (change["from_views"], change["to_views"]),
    }


def summarise(runs: Sequence[dict]) -> dict:
    """Per view count: every run's gap and the mean over runs; the same for the gap's change."""
    if len({run["change_views"] for run in runs}) != 1:
        raise ValueError("the runs measured the gap's change between different view counts")
    views = sorted(set.intersection(*(set(run["gap"]) for run in runs)))
    per_views = []
    for count in views:
        mean, se = mean_and_se([run["gap"][count][0] for run in runs])
        per_views.append(
            {"views": count, "runs": [run["gap"][count][0] for run in runs], "mean": mean, "se": se}
        )
    mean, se = mean_and_se([run["change"][0] for run in runs])
    return {
        "seeds": [run["seed"] for run in runs],
        "files": [run["file"] for run in runs],
        "psnr_gap": per_views,
        "psnr_gap_change": {
            "from_views": runs[0]["change_views"][0],
            "to_views": runs[0]["change_views"][1],
            "runs": [run["change"][0] for run in runs],
            "within_run_se": [run["change"][1] for run in runs],
            "mean": mean,
            "se": se,
            "grew_in_runs": sum(run["change"][0] > 0 for run in runs),
        },
    }


def markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    header = "| Views | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± SE between runs |"
    lines = [header, "|---:|" + "---:|" * (len(seeds) + 1)]
    for row in summary["psnr_gap"]:
        se = "" if row["se"] is None else f" ± {row['se']:.2f}"
        cells = " | ".join(f"{g:+.2f}" for g in row["runs"])
        lines.append(f"| {row['views']} | {cells} | {row['mean']:+.2f}{se} |")
    change = summary["psnr_gap_change"]
    se = "" if change["se"] is None else f" ± {change['se']:.2f}"
    cells = " | ".join(f"{g:+.2f}" for g in change["runs"])
    lines.append(
        f"| change {change['from_views']} -> {change['to_views']} | {cells} | {change['mean']:+.2f}{se} |"
    )
    return "\n".join(lines)


def paper_gap() -> list[tuple[int, float]]:
    """The paper's full-scale PSNR gap (Table 1, DL3DV) per view count."""
    table = paper_tables("depthsplat")[0].scores
    views = sorted({v for _, v in table})
    return [(v, table[("zpressor-depthsplat", v)][0] - table[("depthsplat", v)][0]) for v in views]


def plot(runs: Sequence[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (gaps, changes) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for run in runs:
        views = sorted(run["gap"])
        gaps.errorbar(
            views, [run["gap"][v][0] for v in views], yerr=[run["gap"][v][1] for v in views],
            marker="o", capsize=3, alpha=0.6, label=f"seed {run['seed']} (± SE over scenes)",
        )  # fmt: skip
    rows = summary["psnr_gap"]
    gaps.errorbar(
        [r["views"] for r in rows], [r["mean"] for r in rows], yerr=[r["se"] or 0.0 for r in rows],
        color="black", linewidth=2.5, capsize=4, label="mean (± SE between runs)",
    )  # fmt: skip
    gaps.plot(*zip(*paper_gap()), linestyle="--", color="grey", label="paper, full scale (DL3DV)")
    gaps.axhline(0.0, color="grey", linewidth=0.8)
    gaps.set_xlabel("context views")
    gaps.set_ylabel("PSNR gap, ZPressor - baseline (dB)")
    gaps.legend(fontsize=7)
    gaps.grid(alpha=0.3)
    change = summary["psnr_gap_change"]
    labels = [f"seed {s}" for s in summary["seeds"]] + ["mean"]
    errors = [*change["within_run_se"], change["se"] or 0.0]
    changes.bar(labels, [*change["runs"], change["mean"]], yerr=errors, capsize=4,
                color=["tab:blue"] * len(change["runs"]) + ["black"])  # fmt: skip
    changes.axhline(0.0, color="grey", linewidth=0.8)
    changes.set_ylabel(f"gap change {change['from_views']} -> {change['to_views']} views (dB)")
    changes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("studies", type=Path, nargs="+", help="JSON files of view_trend_study.py runs")
    parser.add_argument("--out", type=Path, required=True, help="output stem: writes OUT.json and OUT.png")
    args = parser.parse_args(argv)
    runs = sorted((load_run(path) for path in args.studies), key=lambda run: run["seed"])
    summary = summarise(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(runs, summary, args.out.with_suffix(".png"))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
