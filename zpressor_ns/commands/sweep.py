"""``zpressor-ns sweep``: evaluate trained runs at several context-view counts (the paper's Tables 1/2).

Each run (a Nerfstudio ``config.yml``) is scored on the index file for each view count, found in
``--index-dir`` by the official naming ``<dataset>_ctx_<N>v_tgt_8v_*.json``; rows report PSNR / SSIM /
LPIPS as ns-eval computes them, plus encoder and render time, peak GPU memory and Gaussians per scene.
A view count that runs out of memory is reported as OOM and the sweep goes on. Writes sweep.json,
sweep.md (the paper's table layout, deltas against the first run) and sweep.png. Runs of the paper
configuration scored on the official DL3DV files at 256x448 also get the paper's Table 1 scores beside
theirs (a table column, dashed lines in the plot), so a reproduction reads against them at a glance.

Example (the paper's DL3DV table, ZPressor against the baseline):
  zpressor-ns sweep --load-config runs/zp/config.yml runs/base/config.yml \\
      --views 36 24 16 12 --index-dir ZPressor/depthsplat/assets/dl3dv_evaluation
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "evaluate trained runs at several context-view counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, nargs="+", required=True, help="config.yml of each run")
    parser.add_argument(
        "--views", type=int, nargs="+", required=True, help="context-view counts, e.g. 8 12 16 24 36"
    )
    parser.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        help="folder of <dataset>_ctx_<N>v_tgt_8v_*.json files (default: the folder of the run's evaluation index)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("sweep_output"), help="folder for sweep.json/md/png"
    )


def run(args: argparse.Namespace) -> int:
    from nerfstudio.utils.eval_utils import eval_setup

    from zpressor_ns.nerfstudio.sweep import sweep_pipeline, write_outputs

    rows = []
    for config_path in args.load_config:
        config, pipeline, _, _ = eval_setup(config_path, test_mode="test")
        index_dir = args.index_dir or default_index_dir(pipeline)
        print(f"{config.method_name}: view counts {args.views} from {index_dir}")
        rows += sweep_pipeline(pipeline, config.method_name, args.views, index_dir)
        del pipeline
    paths = write_outputs(rows, args.output)
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']}, {paths['markdown']} and {paths['plot']}")
    return 0


def default_index_dir(pipeline) -> Path:
    datamanager = pipeline.datamanager
    if datamanager.config.eval_index is not None:
        return Path(datamanager.config.eval_index).parent
    data = Path(datamanager.get_datapath())
    return data / "evaluation" if (data / "evaluation").is_dir() else data
