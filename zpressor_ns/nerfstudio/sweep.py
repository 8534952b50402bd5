"""View sweeps of trained runs (the paper's Tables 1/2): quality and cost against the number of context views.

For every run and view count N, the run is scored on the index file for N views
(``<dataset>_ctx_<N>v_tgt_8v_*.json``) exactly as ``ns-eval`` scores it (per-target metrics, scene
means, then the mean over scenes), and timed: encoder and render milliseconds per scene (medians),
peak GPU memory, Gaussians per scene. A view count that runs out of memory becomes an "OOM" row and
the sweep goes on, which is how the paper's tables report it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from zpressor_ns.data.eval_index import EvaluationIndex
from zpressor_ns.paper_reference import compare_with_paper

METRICS = ("psnr", "ssim", "lpips")


@dataclass
class SweepRow:
    method: str
    views: int
    index_file: str
    status: str  # "ok", "OOM" or "missing index"
    scenes: int = 0
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    encoder_ms: float | None = None
    render_ms: float | None = None
    peak_mib: float | None = None
    gaussians: int | None = None
    per_scene: dict[str, dict[str, float]] = field(default_factory=dict)  # scene -> its scores and timings
    paper: dict[str, float | str] | None = None  # the published score, when evaluated under its protocol
    paper_note: str = ""  # otherwise: why no published score is shown


def find_index_file(folder: Path, views: int) -> Path | None:
    """The index for ``views`` context views in a folder of official-style files, or None."""
    matches = sorted(Path(folder).glob(f"*_ctx_{views}v_tgt_*.json"))
    return matches[0] if matches else None


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "ALLOC_FAILED" in text)


def sweep_pipeline(
    pipeline, method: str, views: list[int], index_dir: Path, progress: bool = True
) -> list[SweepRow]:
    """Rows of one trained pipeline (``FeedForwardPipeline``) over the given view counts."""
    rows = []
    device = torch.device(pipeline.device)
    image_shape = tuple(pipeline.datamanager.image_shape)
    for count in views:
        path = find_index_file(index_dir, count)
        if path is None:
            rows.append(SweepRow(method, count, "", "missing index"))
            continue
        index = EvaluationIndex.load(path)
        dataset = pipeline.datamanager.evaluation_dataset(index)
        reference = compare_with_paper(method, count, path, index, image_shape, dataset.keys())
        row = SweepRow(method, count, str(path), "ok", paper_note=reference.reason)
        row.paper = None if reference.score is None else asdict(reference.score)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            pipeline.eval()
            per_scene = pipeline.evaluate_scenes(dataset=dataset, progress=progress, timed=True)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is turned into a row
            if not is_out_of_memory(error):
                raise
            row.status = "OOM"
            rows.append(row)
            continue
        finally:
            if device.type == "cuda":
                row.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        row.per_scene = per_scene
        scores = list(per_scene.values())
        row.scenes = len(scores)
        for metric in METRICS:
            if all(metric in s for s in scores):
                setattr(row, metric, statistics.fmean(s[metric] for s in scores))
        row.encoder_ms = statistics.median(s["encoder_ms"] for s in scores)
        row.render_ms = statistics.median(s["render_ms"] for s in scores)
        row.gaussians = int(statistics.median(s["gaussians"] for s in scores))
        rows.append(row)
    return rows


def _cell(value: float | int | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _paper_cell(row: SweepRow) -> str:
    if row.paper is None:
        return "-"
    return f"{row.paper['psnr']:.2f} / {row.paper['ssim']:.3f} / {row.paper['lpips']:.3f}"


def markdown_table(rows: list[SweepRow]) -> str:
    """The paper's layout: view counts from most to fewest, one line per method, deltas to the first.

    Where a row was evaluated under the protocol of a published score, a last column shows it; below the
    table, notes say why the other rows have none.
    """
    with_paper = any(row.paper is not None for row in rows)
    header = "| Views | Method | PSNR | SSIM | LPIPS | Encoder (ms) | Render (ms) | Peak (MiB) | Gaussians |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    if with_paper:
        header, rule = header + " Paper (PSNR / SSIM / LPIPS) |", rule + "---|"
    lines = [header, rule]
    for count in sorted({row.views for row in rows}, reverse=True):
        group = [row for row in rows if row.views == count]
        base = next((row for row in group if row.status == "ok"), None)
        for row in group:
            paper = f" {_paper_cell(row)} |" if with_paper else ""
            if row.status != "ok":
                lines.append(
                    f"| {count} | {row.method} | {row.status} | {row.status} | {row.status} | - | - | - | - |"
                    + paper
                )
                continue
            cells = []
            for metric, digits in (("psnr", 2), ("ssim", 3), ("lpips", 3)):
                value = getattr(row, metric)
                text = _cell(value, digits)
                if row is not base and value is not None and getattr(base, metric) is not None:
                    text += f" ({value - getattr(base, metric):+.{digits}f})"
                cells.append(text)
            lines.append(
                f"| {count} | {row.method} | {' | '.join(cells)} | {_cell(row.encoder_ms, 1)} | "
                f"{_cell(row.render_ms, 1)} | {_cell(row.peak_mib, 0)} | {_cell(row.gaussians, 0)} |" + paper
            )
    notes: dict[str, list[str]] = {}
    for row in rows:
        if row.paper is None and row.paper_note:
            notes.setdefault(row.paper_note, []).append(f"{row.method} at {row.views} views")
    if notes:
        lines += ["", "No published score shown for:"]
        lines += [f"- {', '.join(where)}: {note}" for note, where in notes.items()]
    return "\n".join(lines)


def plot_rows(rows: list[SweepRow], path: Path) -> None:
    """PSNR, SSIM, LPIPS and encoder time against context views, one line per method (OOM: missing);
    the paper's published scores, where the protocol has them, as dashed lines of the method's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS"), ("encoder_ms", "encoder (ms)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for method in dict.fromkeys(row.method for row in rows):
        ok = sorted(
            (row for row in rows if row.method == method and row.status == "ok"), key=lambda r: r.views
        )
        for axis, (name, label) in zip(axes, panels):
            points = [(row.views, getattr(row, name)) for row in ok if getattr(row, name) is not None]
            if points:
                (line,) = axis.plot(*zip(*points), marker="o", label=method)
            published = sorted(
                (row.views, row.paper[name])
                for row in rows
                if row.method == method and row.paper is not None and name in row.paper
            )
            if published:
                colour = line.get_color() if points else None
                axis.plot(
                    *zip(*published), linestyle="--", marker="x", color=colour, label=f"{method} (paper)"
                )
            axis.set_xlabel("context views")
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
        failed = [row.views for row in rows if row.method == method and row.status == "OOM"]
        for view_count in failed:
            axes[-1].axvline(view_count, linestyle=":", color="red", alpha=0.6)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(rows: list[SweepRow], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "markdown": out / "sweep.md", "plot": out / "sweep.png"}
    paths["json"].write_text(json.dumps([asdict(row) for row in rows], indent=2))
    paths["markdown"].write_text(markdown_table(rows) + "\n")
    plot_rows(rows, paths["plot"])
    return paths
