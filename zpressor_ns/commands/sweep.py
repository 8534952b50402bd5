"""``zpressor-ns sweep``: evaluate trained runs at several context-view counts (the paper's Tables 1/2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpressor_ns.commands.runs import check_run_config, load_run

HELP = "evaluate trained runs at several context-view counts (paper Tables 1/2)"
DESCRIPTION = """\
Score each run (a Nerfstudio config.yml) on the evaluation index of each view count, found in
--index-dir by the official naming <dataset>_ctx_<N>v_tgt_8v_*.json. Rows report PSNR / SSIM / LPIPS
as ns-eval computes them, encoder and render time, peak GPU memory and Gaussians per scene; a view
count that runs out of memory is reported as OOM and the sweep goes on. Writes OUTPUT/sweep.json,
OUTPUT/sweep.md (the paper's table layout, deltas against the first run) and OUTPUT/sweep.png.

The paper's published score is shown beside a row (a table column, a dashed line in the plot) only
when the row was evaluated under the paper's protocol: a paper configuration, the paper's resolution,
the official index file (checked by its content, not its name) and all of its scenes. Otherwise the
table says why no published score is shown.
"""
EXAMPLE = (
    "zpressor-ns sweep --load-config runs/zp/config.yml runs/base/config.yml --views 36 24 16 12 "
    "--index-dir ZPressor/depthsplat/assets/dl3dv_evaluation"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, nargs="+", required=True, help="config.yml of each run")
    parser.add_argument(
        "--views", type=int, nargs="+", required=True, help="context-view counts, e.g. 8 12 16 24 36"
    )
    parser.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        help="folder of <dataset>_ctx_<N>v_tgt_8v_*.json files "
        "(default: the folder of the run's evaluation index)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("sweep_output"), help="folder for sweep.json/md/png"
    )


def run(args: argparse.Namespace) -> int:
    from zpressor_ns.nerfstudio.sweep import sweep_pipeline, write_outputs

    config_paths = [check_run_config(path) for path in args.load_config]  # all of them before any loading
    rows = []
    for config_path in config_paths:
        config, pipeline, _ = load_run(config_path, test_mode="test")
        index_dir = args.index_dir or default_index_dir(pipeline)
        print(f"{config.method_name}: view counts {args.views} from {index_dir}")
        rows += sweep_pipeline(pipeline, config.method_name, args.views, index_dir)
        del pipeline
    paths = write_outputs(rows, args.output)
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']}, {paths['markdown']} and {paths['plot']}")
    return 0


def default_index_dir(pipeline) -> Path:
    """The folder of the run's evaluation index: the configured file's, else where the dataset's own are."""
    from zpressor_ns.nerfstudio.datamanager import find_dataset_index

    datamanager = pipeline.datamanager
    config = datamanager.config
    if config.eval_index is not None:
        return Path(config.eval_index).parent
    parser = datamanager.dataparser.config
    views = config.eval_num_context_views or config.num_context_views
    found = find_dataset_index(parser.data, parser.standard_index_name, views)
    if found is not None:
        return found.parent
    data = Path(parser.data)
    return data / "evaluation" if (data / "evaluation").is_dir() else data
