"""This project's encoders against the original code on CPU, side by side: CPU time and memory per stage.

    python benchmarks/versus_original.py --original .ref                 # the default sweep (~15 min)
    python benchmarks/versus_original.py --original .ref --methods zpressor-depthsplat --views 12
    python benchmarks/versus_original.py --original .ref --no-encoder --module-tokens 32x56 --module-views 12 36

``--original`` is a local extract of the original repositories (never downloaded): ``<dir>/depthsplat``
(``git archive HEAD depthsplat`` of ziplab/ZPressor), ``<dir>/zpressor`` (its ``zpressor`` package) and
``<dir>/dinov2`` (``hubconf.py`` and ``dinov2/`` of facebookresearch/dinov2). The original imports einops,
jaxtyping, e3nn and scikit-learn; put them on PYTHONPATH (``pip install --no-deps --target DIR ...``). When
the folder is missing the script says so and exits without measuring.

Method. Two worker processes, one per side (the original is a top-level package named ``src``), each with
one thread. Both build the paper configuration with the same weights (the original's random init, carried
to this project with ``import_official``) and the same inputs, and are called in turn, alternating which
goes first, ``--warmup`` untimed calls then ``--reps`` timed ones per setting; figures are medians. Each
call is measured the same way on both sides: process CPU time, and the growth of the resident set: its peak
during the call (the kernel's high-water mark, reset through ``/proc/self/clear_refs`` before the call)
above the resident set just before it, after a garbage collection and ``malloc_trim``. So the weights and
inputs are not counted; what the forward allocates on top of them is. Stages are delimited by hooks on the
corresponding modules of both encoders (same boundaries on both sides), each with its CPU time and its peak
growth above the resident set at its start. ZPressor alone (``--module-views``) runs the original module's
plain fp32 path (its ``default`` attention) against this project's CPU default.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import environment, markdown_table, write_json

BENCHMARKS = Path(__file__).resolve().parent
DEFAULT_OUT = BENCHMARKS / "results" / "versus_original_cpu.json"
METHODS = ("zpressor-depthsplat", "depthsplat")
DEFAULT_VIEWS = {"zpressor-depthsplat": (4, 12, 36, 100, 200), "depthsplat": (4, 12, 24, 36)}
# Stages in forward order; each is (start event, end event) on both sides.
STAGES = (
    "cnn",
    "zpressor",
    "transformer",
    "vit",
    "cost volume",
    "depth regressor",
    "dpt",
    "feature upsampler",
    "gaussian regressor",
    "gaussian head",
    "gaussian adapter",
)


# ---------------------------------------------------------------------------------------------------
# Measuring one call: CPU time and resident-set growth, whole and per stage


def _status_kib(text: str, key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def resident_kib() -> tuple[int, int]:
    """(current, peak since the last reset) resident set of this process in KiB."""
    text = Path("/proc/self/status").read_text()
    return _status_kib(text, "VmRSS"), _status_kib(text, "VmHWM")


def reset_peak_resident() -> None:
    """Set the kernel's resident high-water mark to the current resident set (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def release_free_memory() -> None:
    """Drop garbage and hand freed heap pages back, so the resident set before a call is what is live."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class _Open:
    rss: int
    peak: int
    cpu: float


@dataclass
class StageClock:
    """Accumulates CPU time and peak resident growth between named events.

    ``stages`` maps a stage to its (start, end) events; a stage may run several times per call (its
    CPU times add up, its growth is the largest of its runs). Every event folds the high-water mark into
    all open stages and resets it, so nested or adjacent stages each see their own peak.
    """

    stages: dict[str, tuple[str, str]]
    cpu_ms: dict[str, float] = field(default_factory=dict)
    growth_kib: dict[str, int] = field(default_factory=dict)
    _open: dict[str, _Open] = field(default_factory=dict)

    def event(self, name: str) -> None:
        now = time.process_time()
        rss, peak = resident_kib()
        for state in self._open.values():
            state.peak = max(state.peak, peak)
        reset_peak_resident()
        for stage, (_, end) in self.stages.items():
            if name == end and stage in self._open:
                state = self._open.pop(stage)
                self.cpu_ms[stage] = self.cpu_ms.get(stage, 0.0) + (now - state.cpu) * 1e3
                self.growth_kib[stage] = max(self.growth_kib.get(stage, 0), state.peak - state.rss)
        for stage, (start, _) in self.stages.items():
            if name == start and stage not in self._open:
                self._open[stage] = _Open(rss, rss, time.process_time())

    def reset(self) -> None:
        self.cpu_ms.clear()
        self.growth_kib.clear()
        self._open.clear()


def measure(call: Callable[[], Any], clock: StageClock) -> tuple[dict[str, float], Any]:
    """One call under the clock: whole-call CPU ms and growth MiB, and per stage."""
    release_free_memory()
    clock.reset()
    clock.event("call:start")
    out = call()
    clock.event("call:end")
    figures = {"cpu_ms": clock.cpu_ms.pop("call"), "growth_mib": clock.growth_kib.pop("call") / 1024}
    stages = {
        stage: {"cpu_ms": clock.cpu_ms[stage], "growth_mib": clock.growth_kib[stage] / 1024}
        for stage in clock.cpu_ms
    }
    return {**figures, "stages": stages}, out


def module_events(module: torch.nn.Module, name: str, clock: StageClock) -> None:
    module.register_forward_pre_hook(lambda *_: clock.event(f"{name}:start"))
    module.register_forward_hook(lambda *_: clock.event(f"{name}:end"))


def wrap_events(owner: Any, attribute: str, name: str, clock: StageClock) -> None:
    """Emit ``name:start``/``name:end`` around ``owner.attribute`` (a function or a bound method)."""
    inner = getattr(owner, attribute)

    def wrapped(*args, **kwargs):
        clock.event(f"{name}:start")
        out = inner(*args, **kwargs)
        clock.event(f"{name}:end")
        return out

    setattr(owner, attribute, wrapped)


def stage_events(zpressor: bool) -> dict[str, tuple[str, str]]:
    """The same boundaries on both sides. The cost volume runs from the end of the ViT (its features'
    resize included) to the depth regressor; the depth regressor up to the DPT head; the Gaussian adapter
    from the Gaussian head to the end of the forward."""
    events = {
        "call": ("call:start", "call:end"),
        "cnn": ("cnn:start", "cnn:end"),
        "transformer": ("transformer:start", "transformer:end"),
        "vit": ("vit:start", "vit:end"),
        "cost volume": ("vit:end", "regressor:start"),
        "depth regressor": ("regressor:start", "dpt:start"),
        "dpt": ("dpt:start", "dpt:end"),
        "feature upsampler": ("upsampler:start", "upsampler:end"),
        "gaussian regressor": ("gaussian_regressor:start", "gaussian_regressor:end"),
        "gaussian head": ("gaussian_head:start", "gaussian_head:end"),
        "gaussian adapter": ("gaussian_head:end", "call:end"),
    }
    if zpressor:
        events["zpressor"] = ("zpressor:start", "zpressor:end")
    return events


# ---------------------------------------------------------------------------------------------------
# The two sides


def synthetic_batch(views: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """The efficiency benchmark's inputs (random images, a smooth camera path without FPS ties)."""
    from efficiency import synthetic_inputs

    return synthetic_inputs(views, 1, height, width, torch.device("cpu"), seed=0)


class ProjectSide:
    """This project's encoder (its CPU defaults) and ZPressor module."""

    def __init__(self) -> None:
        self.encoder = None
        self.module = None

    def build(self, method: str, weights: str) -> dict:
        from zpressor_ns.encoders import build_encoder, import_official

        self.encoder = None
        gc.collect()
        encoder = build_encoder(method).eval()
        official = torch.load(weights, map_location="cpu", weights_only=True)
        encoder.load_state_dict(import_official(official, method), strict=True)
        del official
        self.clock = StageClock(stage_events(encoder.zpressor is not None))
        for module, name in (
            (encoder.cnn, "cnn"),
            (encoder.zpressor, "zpressor"),
            (encoder.transformer, "transformer"),
            (encoder.depth_regressor, "regressor"),
            (encoder.dpt, "dpt"),
            (encoder.feature_upsampler, "upsampler"),
            (encoder.gaussian_regressor, "gaussian_regressor"),
        ):
            if module is not None:
                module_events(module, name, self.clock)
        wrap_events(encoder.vit, "get_intermediate_layers", "vit", self.clock)
        # On CPU the head runs a few views at a time: one stage around all its steps.
        wrap_events(encoder, "_gaussian_head", "gaussian_head", self.clock)
        self.encoder = encoder
        return {}

    def run(self, views: int, anchors: int, height: int, width: int, save: str | None) -> dict:
        batch = synthetic_batch(views, height, width)
        k = anchors if self.encoder.zpressor is not None else None
        args = (batch["images"], batch["c2w"], batch["K"], batch["near"], batch["far"])
        with torch.inference_mode():
            figures, out = measure(lambda: self.encoder(*args, num_anchors=k), self.clock)
        if save:
            torch.save({"means": out.means, "harmonics": out.harmonics}, save)
        return figures

    def build_module(self, weights: str) -> dict:
        from zpressor_ns.checkpoints import import_official_zpressor
        from zpressor_ns.zpressor import ZPressor

        self.module = ZPressor(dim=128).eval()
        official = torch.load(weights, map_location="cpu", weights_only=True)
        self.module.load_state_dict(import_official_zpressor(official, ""), strict=True)
        self.module_clock = StageClock({"call": ("call:start", "call:end")})
        return {}

    def run_module(self, views: int, anchors: int, tokens: list[int], save: str | None) -> dict:
        from zpressor_module import make_inputs

        features, c2w = make_inputs(views, tuple(tokens), 128, torch.device("cpu"))
        with torch.inference_mode():
            figures, out = measure(lambda: self.module(features, c2w, anchors).features, self.module_clock)
        if save:
            torch.save({"features": out}, save)
        return figures


def paper_config(module: types.ModuleType, zpressor: bool, anchors: int):
    """The original's encoder configuration as its Hydra files give it for DL3DV 256x448 (test.py)."""
    from src.model.encoder.common.gaussian_adapter import GaussianAdapterCfg
    from src.model.encoder.visualization.encoder_visualizer_depthsplat_cfg import (
        EncoderVisualizerDepthSplatCfg,
    )

    return module.EncoderDepthSplatCfg(
        name="depthsplat",
        d_feature=128,
        num_depth_candidates=128,
        num_surfaces=1,
        visualizer=EncoderVisualizerDepthSplatCfg(num_samples=8, min_resolution=256, export_ply=False),
        gaussian_adapter=GaussianAdapterCfg(gaussian_scale_min=0.1, gaussian_scale_max=0.3, sh_degree=4),
        opacity_mapping=module.OpacityMappingCfg(initial=0.0, final=0.0, warm_up=1, no_mapping=False),
        gaussians_per_pixel=1,
        unimatch_weights_path=None,
        downscale_factor=4,
        shim_patch_size=16,
        multiview_trans_attn_split=2,
        costvolume_unet_feat_dim=128,
        costvolume_unet_channel_mult=[1, 1, 1],
        costvolume_unet_attn_res=[4],
        depth_unet_feat_dim=32,
        depth_unet_attn_res=[16],
        depth_unet_channel_mult=[1, 1, 1, 1, 1],
        upsample_factor=8,
        lowest_feature_resolution=8,
        depth_unet_channels=128,
        grid_sample_disable_cudnn=True,
        no_cross_attn=False,
        use_cost_volume=True,
        use_cluster=zpressor,
        cluster_num=anchors,
        min_cluster_num=0,
        max_cluster_num=0,
        num_zpressor_layers=6,
        cluster_group=[],
        apply_cluster_steps=0,
        use_clstoken=False,
        use_avg_token=False,
        no_self_attn=False,
        large_gaussian_head=False,
        color_large_unet=True,
        init_sh_input_img=True,
        feature_upsampler_channels=128,
        gaussian_regressor_channels=32,
        supervise_intermediate_depth=True,
        return_depth=True,
        train_depth_only=False,
        monodepth_vit_type="vitb",
        costvolume_nearest_n_views=3,
        multiview_trans_nearest_n_views=3,
    )


def _bare_package(name: str, path: Path) -> None:
    """Register a package without running its ``__init__`` (which imports datasets and visualisers)."""
    package = types.ModuleType(name)
    package.__path__ = [str(path)]
    sys.modules[name] = package


def import_original(root: Path) -> types.ModuleType:
    """The original DepthSplat encoder module, imported from ``root`` without its training stack."""
    code = root / "depthsplat"
    sys.path[:0] = [str(code), str(root)]  # 'src' from depthsplat/, 'zpressor' from the root
    _bare_package("src.dataset", code / "src" / "dataset")
    _bare_package("src.model.encoder", code / "src" / "model" / "encoder")
    import importlib

    def installed(name: str) -> bool:
        try:
            importlib.import_module(name)
            return True
        except Exception:  # absent, or built for another torch
            return False

    # Imported by the encoder's modules but unused at this configuration: stubbed only when absent.
    if not installed("omegaconf"):  # a type hint of the global config (read only for use_clstoken)
        stub = types.ModuleType("src.global_cfg")
        stub.get_cfg = stub.set_cfg = lambda *args: None
        sys.modules["src.global_cfg"] = stub
    if not installed("torchvision"):
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        sys.modules["torchvision.transforms"] = types.ModuleType("torchvision.transforms")
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    if not installed("timm"):
        sys.modules["timm"] = types.ModuleType("timm")

    return importlib.import_module("src.model.encoder.encoder_depthsplat")


@contextlib.contextmanager
def local_dinov2(root: Path):
    """Serve the original's ``torch.hub.load("facebookresearch/dinov2", ...)`` from ``root/dinov2``, untrained."""
    hub_load = torch.hub.load

    def load(repo: str, model: str, *args, **kwargs):
        kwargs.update(source="local", pretrained=False)
        return hub_load(str(root / "dinov2"), model, *args, **kwargs)

    torch.hub.load = load
    try:
        yield
    finally:
        torch.hub.load = hub_load


class OriginalSide:
    """The original encoder (its official forward: ZPressor's ``flash_attn`` path) and ZPressor module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.encoder_module = import_original(root)
        self.encoder = None
        self.module = None

    def build(self, method: str, weights: str) -> dict:
        E = self.encoder_module
        self.encoder = None
        gc.collect()
        zpressor = method.startswith("zpressor-")
        torch.manual_seed(0)
        with local_dinov2(self.root), contextlib.redirect_stdout(sys.stderr):
            encoder = E.EncoderDepthSplat(paper_config(E, zpressor, 6)).eval()
        torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, weights)
        self.clock = StageClock(stage_events(zpressor))
        predictor = encoder.depth_predictor
        for module, name in (
            (predictor.backbone, "cnn"),
            (getattr(predictor, "zipmatch", None) if zpressor else None, "zpressor"),
            (predictor.transformer, "transformer"),
            (predictor.regressor[0], "regressor"),
            (predictor.upsampler, "dpt"),
            (encoder.feature_upsampler, "upsampler"),
            (encoder.gaussian_regressor, "gaussian_regressor"),
            (encoder.gaussian_head, "gaussian_head"),
        ):
            if module is not None:
                module_events(module, name, self.clock)
        wrap_events(predictor.pretrained, "get_intermediate_layers", "vit", self.clock)
        self.encoder = encoder
        return {"params": sum(p.numel() for p in encoder.parameters())}

    def run(self, views: int, anchors: int, height: int, width: int, save: str | None) -> dict:
        batch = synthetic_batch(views, height, width)
        self.encoder.cfg.cluster_num = anchors
        context = {
            "image": batch["images"],
            "extrinsics": batch["c2w"],
            "intrinsics": batch["K"],
            "near": batch["near"],
            "far": batch["far"],
        }
        with torch.inference_mode():
            figures, out = measure(
                lambda: self.encoder(context, 0, deterministic=False, visualization_dump=None), self.clock
            )
        if save:
            gaussians = out["gaussians"]
            torch.save({"means": gaussians.means, "harmonics": gaussians.harmonics}, save)
        return figures

    def build_module(self, weights: str) -> dict:
        from zpressor.attention import Attention, CrossAttention
        from zpressor.zpressor import ZPressor

        # The original's own exact fp32 attention ("default"); its forward never passes the argument.
        Attention.forward.__defaults__ = ("default",)
        CrossAttention.forward.__defaults__ = ("default",)
        torch.manual_seed(0)
        self.module = ZPressor(embed_dim=128, num_heads=1, num_layers=6).eval()
        torch.save(self.module.state_dict(), weights)
        self.module_clock = StageClock({"call": ("call:start", "call:end")})
        return {}

    def run_module(self, views: int, anchors: int, tokens: list[int], save: str | None) -> dict:
        from zpressor_module import make_inputs

        features, c2w = make_inputs(views, tuple(tokens), 128, torch.device("cpu"))
        with torch.inference_mode():
            figures, out = measure(
                lambda: self.module([features], extrinsics=c2w, cluster_num=anchors)[0], self.module_clock
            )
        if save:
            torch.save({"features": out}, save)
        return figures


def serve(side_name: str, original: Path | None) -> None:
    """Worker loop: one JSON request per line on stdin, one JSON reply per line on the saved stdout."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the code under test prints goes to stderr
    torch.set_num_threads(1)
    side = ProjectSide() if side_name == "project" else OriginalSide(original)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = getattr(side, op)(**request)
        except Exception as error:  # reported to the parent, which records it for the setting
            reply = {"error": f"{type(error).__name__}: {error}"}
        channel.write(json.dumps(reply) + "\n")
        channel.flush()


class Worker:
    def __init__(self, side: str, original: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--worker", side, "--original", str(original)]
        self.side = side
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def ask(self, op: str, **request) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.side} worker died (see its messages above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.side} {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write('{"op": "quit"}\n')
            self.process.stdin.flush()
        self.process.wait(timeout=60)


# ---------------------------------------------------------------------------------------------------
# The sweep


def median_figures(calls: list[dict]) -> dict:
    """Medians over the timed calls, per figure and per stage."""
    summary = {key: statistics.median(c[key] for c in calls) for key in ("cpu_ms", "growth_mib")}
    summary["cpu_ms_all"] = [round(c["cpu_ms"], 1) for c in calls]
    if "stages" in calls[0]:
        summary["stages"] = {
            stage: {
                key: statistics.median(c["stages"][stage][key] for c in calls)
                for key in ("cpu_ms", "growth_mib")
            }
            for stage in calls[0]["stages"]
        }
    return summary


def relative_difference(ours: Path, theirs: Path, key: str) -> float:
    a = torch.load(ours, weights_only=True)[key].double()
    b = torch.load(theirs, weights_only=True)[key].double()
    return ((a - b).abs().max() / b.abs().max()).item()


def interleaved(
    workers: dict[str, Worker], op: str, request: dict, warmup: int, reps: int, tmp: Path, key: str
) -> dict:
    """Warm-up and timed calls on both sides in turn (alternating which goes first); medians and the
    largest output difference (relative to the original's largest value)."""
    calls: dict[str, list[dict]] = {name: [] for name in workers}
    for rep in range(warmup + reps):
        order = list(workers) if rep % 2 == 0 else list(workers)[::-1]
        last = rep == warmup + reps - 1
        for name in order:
            save = str(tmp / f"{name}.pt") if last else None
            figures = workers[name].ask(op, **request, save=save)
            if rep >= warmup:
                calls[name].append(figures)
    row = {name: median_figures(c) for name, c in calls.items()}
    row["max_rel_diff"] = relative_difference(tmp / "project.pt", tmp / "original.pt", key)
    return row


def run_sweep(args) -> dict:
    results: dict[str, Any] = {"encoder": [], "module": []}
    workers = {"original": Worker("original", args.original), "project": Worker("project", args.original)}
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            weights = str(tmp / "weights.pt")
            for method in args.methods if args.encoder else ():
                workers["original"].ask("build", method=method, weights=weights)
                workers["project"].ask("build", method=method, weights=weights)
                views_list = args.views or DEFAULT_VIEWS[method]
                for views in views_list:
                    anchors = min(args.anchors, views) if method.startswith("zpressor-") else views
                    print(f"{method} {views} views ...", file=sys.stderr, flush=True)
                    request = {"views": views, "anchors": anchors, "height": args.height, "width": args.width}
                    row = interleaved(workers, "run", request, args.warmup, args.reps, tmp, "means")
                    results["encoder"].append({"method": method, "views": views, "anchors": anchors, **row})
            if args.module_views:
                workers["original"].ask("build_module", weights=weights)
                workers["project"].ask("build_module", weights=weights)
                for views in args.module_views:
                    print(f"ZPressor module {views} views ...", file=sys.stderr, flush=True)
                    request = {"views": views, "anchors": args.anchors, "tokens": list(args.module_tokens)}
                    row = interleaved(workers, "run_module", request, args.warmup, args.reps, tmp, "features")
                    tokens = f"{args.module_tokens[0]}x{args.module_tokens[1]}"
                    results["module"].append(
                        {"views": views, "anchors": args.anchors, "tokens": tokens, **row}
                    )
    finally:
        for worker in workers.values():
            worker.close()
    return results


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "-"


def tables(results: dict) -> str:
    """Markdown: the whole encoder per setting, stages per setting, ZPressor alone."""
    parts = []
    header = [
        "method",
        "views",
        "K",
        "CPU ms original",
        "CPU ms ours",
        "ratio",
        "MiB original",
        "MiB ours",
        "ratio",
        "max rel diff",
    ]
    rows = []
    for r in results["encoder"]:
        o, p = r["original"], r["project"]
        rows.append(
            [
                r["method"], r["views"], r["anchors"],
                f"{o['cpu_ms']:.0f}", f"{p['cpu_ms']:.0f}", ratio(p["cpu_ms"], o["cpu_ms"]),
                f"{o['growth_mib']:.0f}", f"{p['growth_mib']:.0f}", ratio(p["growth_mib"], o["growth_mib"]),
                f"{r['max_rel_diff']:.1e}",
            ]
        )  # fmt: skip
    if rows:
        parts.append(markdown_table(header, rows, [False] + [True] * 9))
    for r in results["encoder"]:
        o, p = r["original"]["stages"], r["project"]["stages"]
        rows = []
        for stage in STAGES:
            if stage in o or stage in p:
                os_, ps = o.get(stage), p.get(stage)
                rows.append(
                    [
                        stage,
                        None if os_ is None else f"{os_['cpu_ms']:.0f}",
                        None if ps is None else f"{ps['cpu_ms']:.0f}",
                        None if os_ is None or ps is None else ratio(ps["cpu_ms"], os_["cpu_ms"]),
                        None if os_ is None else f"{os_['growth_mib']:.0f}",
                        None if ps is None else f"{ps['growth_mib']:.0f}",
                    ]
                )
        title = f"Stages, {r['method']}, {r['views']} views (K={r['anchors']})"
        stage_header = ["stage", "CPU ms original", "CPU ms ours", "ratio", "MiB original", "MiB ours"]
        parts.append(f"{title}\n\n" + markdown_table(stage_header, rows, [False] + [True] * 5))
    rows = []
    for r in results["module"]:
        o, p = r["original"], r["project"]
        rows.append(
            [
                r["views"], r["tokens"], r["anchors"],
                f"{o['cpu_ms']:.0f}", f"{p['cpu_ms']:.0f}", ratio(p["cpu_ms"], o["cpu_ms"]),
                f"{o['growth_mib']:.0f}", f"{p['growth_mib']:.0f}", ratio(p["growth_mib"], o["growth_mib"]),
                f"{r['max_rel_diff']:.1e}",
            ]
        )  # fmt: skip
    if rows:
        module_header = ["views", "tokens", "K", "CPU ms original fp32", "CPU ms ours", "ratio"]
        module_header += ["MiB original", "MiB ours", "ratio", "max rel diff"]
        parts.append("ZPressor alone\n\n" + markdown_table(module_header, rows, [True] * 10))
    return "\n\n".join(parts)


def parse_tokens(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"expected HxW such as 8x16, got {text!r}")
    return int(height), int(width)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, help="local extract of the original code (see above)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--views", type=int, nargs="+", help="context views (default: per method, 4-200 / 4-36)"
    )
    parser.add_argument("--anchors", type=int, default=6, help="ZPressor anchors K")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-encoder", dest="encoder", action="store_false", help="ZPressor module only")
    parser.add_argument("--module-views", type=int, nargs="*", default=[12, 36, 100, 200])
    parser.add_argument(
        "--module-tokens", type=parse_tokens, default=(8, 16), help="tokens per view (8x16: 64x128)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", choices=("project", "original"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        serve(args.worker, args.original)
        return 0
    needed = (
        "depthsplat/src/model/encoder/encoder_depthsplat.py",
        "zpressor/zpressor.py",
        "dinov2/hubconf.py",
    )
    missing = [n for n in needed if args.original is None or not (args.original / n).is_file()]
    if missing:
        where = (
            "no --original given" if args.original is None else f"{args.original} lacks {', '.join(missing)}"
        )
        print(f"versus_original: skipped, the original code is not available ({where})", file=sys.stderr)
        return 0
    args.original = args.original.resolve()
    started = time.time()
    results = run_sweep(args)
    payload = {
        "command": " ".join(["python", "benchmarks/versus_original.py", *(argv or sys.argv[1:])]),
        "environment": environment(torch.device("cpu")) | {"threads": 1},
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out", "original")},
        "seconds": round(time.time() - started),
        **results,
    }
    write_json(args.out, json.loads(json.dumps(payload, default=str)))
    print(tables(results))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
