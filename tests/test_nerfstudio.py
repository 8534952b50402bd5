"""The Nerfstudio face end to end on CPU: registration, ns-train (in-process) + resume, ns-eval, the
viewer's render path, ns-export, and strict checkpoint loading."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch

pytest.importorskip(
    "nerfstudio", reason="drives Nerfstudio, which the core does not need (the GPU machine has none)"
)

from nerfstudio.configs.method_configs import all_methods  # noqa: E402
from nerfstudio.plugins.registry_dataparser import DataParserSpecification  # noqa: E402
from nerfstudio.plugins.types import MethodSpecification  # noqa: E402
from nerfstudio.scripts.eval import ComputePSNR  # noqa: E402
from nerfstudio.scripts.train import train_loop  # noqa: E402
from nerfstudio.utils.eval_utils import eval_setup  # noqa: E402

from zpressor_ns.encoders.registry import registered_method_names  # noqa: E402
from zpressor_ns.render import render_gaussians  # noqa: E402

METHODS = set(registered_method_names())
DATAPARSERS = {"re10k", "acid", "dl3dv"}


def test_methods_and_dataparsers_are_registered():
    methods = {
        ep.name: ep.load() for ep in entry_points(group="nerfstudio.method_configs") if ep.name in METHODS
    }
    assert set(methods) == METHODS
    for name, spec in methods.items():
        assert isinstance(spec, MethodSpecification)
        assert spec.config.method_name == name  # the CLI key is the config's name
        assert name in all_methods
        assert spec.config.viewer.websocket_host == "127.0.0.1"  # never listen on every interface by default
    parsers = {
        ep.name: ep.load()
        for ep in entry_points(group="nerfstudio.dataparser_configs")
        if ep.name in DATAPARSERS
    }
    assert set(parsers) == DATAPARSERS
    assert all(isinstance(spec, DataParserSpecification) for spec in parsers.values())
    assert (parsers["re10k"].config.near, parsers["re10k"].config.far) == (1.0, 200.0)
    assert parsers["dl3dv"].config.evaluation_window == 50


@pytest.mark.parametrize("method", ["zpressor-mvsplat", "mvsplat"])
def test_mvsplat_methods_carry_the_original_recipe(method):
    """MVSplat's own depth range and view sampler come from the method (whatever the dataset's defaults);
    optimiser, schedule, losses and evaluation views are the original's (mvsplat/README, configs, test_re10k.py)."""
    config = all_methods[method]
    datamanager, model = config.pipeline.datamanager, config.pipeline.model
    assert (datamanager.near, datamanager.far, datamanager.view_sampler) == (1.0, 100.0, "mvsplat")
    assert datamanager.image_shape == (256, 256) and datamanager.eval_num_context_views == 36
    views = (12, 8, 1) if method == "zpressor-mvsplat" else (4, 4, 14)
    assert (datamanager.num_context_views, datamanager.num_target_views, datamanager.batch_size) == views
    assert (model.method, model.preset) == (method, "paper")
    assert (model.lpips_weight, model.ib_weight, model.intermediate_weight) == (0.05, 0.0, 0.0)
    optimizer = config.optimizers["encoder"]["optimizer"]
    assert (optimizer.lr, optimizer.weight_decay, optimizer.max_grad_norm) == (2e-4, 0.0, 0.5)  # Adam
    assert config.max_num_iterations == 300_001
    assert config.optimizers["encoder"]["scheduler"].max_steps is None  # spans the run's length
    # The small presets train on the dataset's own depth range and sampler (synthetic scenes are short).
    small = all_methods[f"{method}-small"].pipeline.datamanager
    assert (small.near, small.far, small.view_sampler) == (None, None, None)


def test_the_methods_depth_range_and_sampler_reach_the_examples(synthetic_root, method_config, tmp_path):
    from zpressor_ns.data.samplers import BoundedSampler
    from zpressor_ns.nerfstudio.datamanager import UserError

    config = method_config("zpressor-mvsplat-small", synthetic_root, tmp_path, steps=1)
    datamanager = config.pipeline.datamanager
    datamanager.near, datamanager.far = 2.0, 50.0
    manager = datamanager.setup(device="cpu")
    assert (manager.options.near, manager.options.far) == (2.0, 50.0)  # over the dataparser's
    context = manager.display_context(manager.display_scene, 6)
    assert torch.equal(context["near"], torch.full((1, 6), 2.0))
    assert torch.equal(context["far"], torch.full((1, 6), 50.0))
    assert manager._training_sampler() == BoundedSampler.preset("re10k", 6, 4)  # the dataset's
    datamanager.near = datamanager.far = None
    manager = datamanager.setup(device="cpu")
    parser = datamanager.dataparser
    assert (manager.options.near, manager.options.far) == (parser.near, parser.far)
    # MVSplat's sampler (gaps 45-192 from step 0) replaces the dataset's: the 40-frame synthetic scenes
    # are too short for it, and the datamanager says so before training starts.
    datamanager.view_sampler = "mvsplat"
    with pytest.raises(UserError, match=r"needs at least 46 \(context gap >= 45 at step 0\)"):
        datamanager.setup(device="cpu")


def documented_ns_train_commands() -> list[list[str]]:
    """Every ``ns-train`` command line in the README and docs/ (continuations joined, comments dropped)."""
    import shlex
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    commands = []
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if line.startswith("ns-train "):
                commands.append(shlex.split(line.split(" #")[0])[1:])
    return commands


def test_documented_ns_train_commands_parse():
    """The README's commands are what users paste: each must parse with Nerfstudio's own CLI (an option
    after the dataparser's name that belongs to the method is refused there)."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from zpressor_ns.dataparsers.multiscene import MultiSceneDataParserConfig

    commands = documented_ns_train_commands()
    assert len(commands) >= 4
    for argv in commands:
        config = tyro.cli(AnnotatedBaseConfigUnion, args=argv)
        assert config.method_name == argv[0]
        assert isinstance(config.pipeline.datamanager.dataparser, MultiSceneDataParserConfig), argv
        assert config.data is not None or config.pipeline.datamanager.dataparser.data is not None, argv
        if "--pipeline.model.pretrained" in argv:
            assert config.pipeline.model.pretrained is not None


def test_train_writes_checkpoint_and_resumes(trained_run, synthetic_root, method_config):
    checkpoints = sorted(p.name for p in trained_run.get_checkpoint_dir().glob("step-*.ckpt"))
    assert checkpoints == ["step-000000002.ckpt"]
    state = torch.load(trained_run.get_checkpoint_dir() / checkpoints[0], map_location="cpu")  # weights-only
    head = next(key for key in state["pipeline"] if "encoder.gaussian_head" in key and key.endswith("weight"))
    before = state["pipeline"][head].clone()

    resumed = method_config(trained_run.method_name, synthetic_root, trained_run.output_dir, steps=2)
    resumed.timestamp = "resumed"
    resumed.load_dir = trained_run.get_checkpoint_dir()
    train_loop(local_rank=0, world_size=1, config=resumed)
    after_path = resumed.get_checkpoint_dir() / "step-000000004.ckpt"
    assert after_path.exists()  # counting continued from the loaded step
    after = torch.load(after_path, map_location="cpu")
    assert after["step"] == 4
    assert not torch.equal(after["pipeline"][head], before)


def test_ns_eval_scores_the_index(trained_run, tmp_path):
    config_path = trained_run.get_base_dir() / "config.yml"
    ComputePSNR(
        load_config=config_path, output_path=tmp_path / "eval.json", render_output_path=tmp_path / "renders"
    ).main()
    report = json.loads((tmp_path / "eval.json").read_text())
    results = report["results"]
    assert report["method_name"] == trained_run.method_name
    assert results["num_scenes"] == 2
    for metric in ("psnr", "ssim"):
        assert np.isfinite(results[metric]) and np.isfinite(results[f"{metric}_std"])
    per_scene = json.loads((tmp_path / "renders" / "per_scene.json").read_text())
    index = json.loads(trained_run.pipeline.datamanager.eval_index.read_text())
    assert set(per_scene) == set(index)
    # Scene averages, then the mean over scenes (the original protocol).
    assert results["psnr"] == pytest.approx(np.mean([s["psnr"] for s in per_scene.values()]), rel=1e-9)
    key = next(iter(index))
    renders = sorted(p.name for p in (tmp_path / "renders" / key).glob("*_pred.png"))
    assert renders == [f"{frame:06d}_pred.png" for frame in sorted(index[key]["target"])]


def test_viewer_renders_the_cached_scene_through_nerfstudio_cameras(trained_run):
    _, pipeline, _, _ = eval_setup(trained_run.get_base_dir() / "config.yml", test_mode="inference")
    model, dataset = pipeline.model, pipeline.datamanager.train_dataset
    assert model.display_gaussians is not None and model.num_points > 0
    camera = dataset.cameras[2:3]
    outputs = model.get_outputs_for_camera(camera)
    height, width = int(camera.height), int(camera.width)
    assert outputs["rgb"].shape == (height, width, 3)
    assert outputs["depth"].shape == (height, width, 1)
    # The same view rendered directly from the context's OpenCV pose and normalised K.
    context = pipeline.datamanager.display_context(
        pipeline.datamanager.display_scene, pipeline.datamanager.display_num_context
    )
    direct = render_gaussians(
        model.display_gaussians,
        context["c2w"][:, 2:3],
        context["K"][:, 2:3],
        context["near"][:, 2:3],
        context["far"][:, 2:3],
        (height, width),
        centred_principal_point=False,
    )
    assert torch.allclose(outputs["rgb"], direct.color[0, 0].permute(1, 2, 0).clamp(0, 1), atol=1e-4)


def test_viewer_background_changes_viewer_renders_only(trained_run):
    """Nerfstudio's viewer calls ``set_background`` before every render: losses and evaluation renders
    must keep the configured (black) background, while the viewer's own renders take the chosen colour."""
    _, pipeline, _, _ = eval_setup(trained_run.get_base_dir() / "config.yml", test_mode="test")
    model = pipeline.model
    batch = next(iter(pipeline.datamanager.benchmark_batches()))
    camera = pipeline.datamanager.train_dataset.cameras[2:3]
    with torch.no_grad():
        losses_before = model.get_loss_dict(model(batch), batch)
        view_before = model.get_outputs_for_camera(camera)
        model.set_background(torch.ones(3))
        losses_after = model.get_loss_dict(model(batch), batch)
        view_after = model.get_outputs_for_camera(camera)
    assert losses_after.keys() == losses_before.keys()
    for name, value in losses_before.items():
        assert torch.equal(losses_after[name], value), name
    # The viewer composites onto white now: colour + (1 - alpha) x white.
    alpha = view_before["accumulation"]
    assert bool((alpha < 0.99).any())
    expected = (view_before["rgb"] + (1 - alpha)).clamp(0, 1)
    assert torch.allclose(view_after["rgb"], expected, atol=1e-5)


def test_viewer_frustums_set_anchors_apart_from_supports():
    import viser.transforms as vtf
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    from zpressor_ns.nerfstudio.viewer_cameras import ANCHOR_COLOUR, SUPPORT_COLOUR, draw_context_cameras

    class Handle:
        def __init__(self, **kwargs):
            self.kwargs, self.removed = kwargs, False

        def remove(self):
            self.removed = True

    class Scene:
        def add_camera_frustum(self, **kwargs):
            return Handle(**kwargs)

    server = type("Server", (), {"scene": Scene()})()
    c2w = torch.eye(4).repeat(1, 4, 1, 1)
    c2w[0, :, 0, 3] = torch.arange(4.0)
    c2w[0, 2, :3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # one camera rolled 90 degrees
    K = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]]).expand(1, 4, 3, 3)
    context = {"c2w": c2w, "K": K, "image": torch.zeros(1, 4, 3, 64, 128)}
    first = draw_context_cameras(server, context, torch.tensor([[2, 0]]))
    colours = [h.kwargs["color"] for h in first]
    assert colours == [ANCHOR_COLOUR, SUPPORT_COLOUR, ANCHOR_COLOUR, SUPPORT_COLOUR]
    assert first[2].kwargs["scale"] > first[1].kwargs["scale"]
    np.testing.assert_allclose(
        first[3].kwargs["position"], np.array([3.0, 0, 0]) * VISER_NERFSTUDIO_SCALE_RATIO
    )
    rotation = vtf.SO3(np.asarray(first[2].kwargs["wxyz"])).as_matrix()
    np.testing.assert_allclose(rotation, c2w[0, 2, :3, :3].numpy(), atol=1e-6)
    assert first[0].kwargs["fov"] == pytest.approx(2 * np.arctan(0.5))  # vertical, from normalised fy
    assert first[0].kwargs["aspect"] == pytest.approx(2.0)
    # Redrawing (another scene or view count) replaces the old frustums; without ZPressor all are supports.
    second = draw_context_cameras(server, context, None, previous=first)
    assert all(h.removed for h in first)
    assert {h.kwargs["color"] for h in second} == {SUPPORT_COLOUR}


def test_viewer_only_session_starts_browsers_at_the_scene_and_shows_the_run(trained_run):
    """Nerfstudio's default browser camera sits at (3, 3, 3) looking at the origin, far from datasets that keep
    their own world frame: every browser starts at the display scene's first context camera instead, and a
    session without a trainer shows the run's step and no pause/resume buttons."""
    from types import SimpleNamespace

    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO as SCALE

    _, pipeline, _, step = eval_setup(trained_run.get_base_dir() / "config.yml", test_mode="test")

    class Camera:
        def __init__(self):
            self.callbacks, self.set = [], {}

        def on_update(self, callback):
            self.callbacks.append(callback)

        def __setattr__(self, name, value):
            if name in ("up_direction", "position", "look_at", "fov"):
                self.set[name] = np.asarray(value)
            else:
                super().__setattr__(name, value)

    class Client:
        def __init__(self):
            self.camera = Camera()

        def atomic(self):
            import contextlib

            return contextlib.nullcontext()

    connected, steps = [], []
    button = lambda: SimpleNamespace(visible=True)  # noqa: E731
    viewer = SimpleNamespace(
        trainer=None,
        pause_train=button(),
        resume_train=button(),
        update_step=steps.append,
        viser_server=SimpleNamespace(on_client_connect=connected.append, scene=None),
    )
    pipeline._on_viewer_ready(viewer)
    assert not viewer.pause_train.visible and not viewer.resume_train.visible and steps == [step]

    client = Client()
    (on_connect,) = connected
    on_connect(client)
    assert client.camera.set == {}  # its camera is unknown until the browser reports it
    for callback in client.camera.callbacks:
        callback(client.camera)
    context = pipeline.datamanager.display_context(
        pipeline.datamanager.display_scene, pipeline.datamanager.display_num_context
    )
    c2w = context["c2w"][0, 0].double().numpy()
    moved = client.camera.set
    np.testing.assert_allclose(moved["position"], c2w[:3, 3] * SCALE, atol=1e-5)
    towards = (moved["look_at"] - moved["position"]) / SCALE
    depth = np.linalg.norm(towards)
    np.testing.assert_allclose(towards / depth, c2w[:3, 2], atol=1e-5)  # looking where the camera looked
    np.testing.assert_allclose(moved["up_direction"], -c2w[:3, 1], atol=1e-6)  # OpenCV: image y points down
    assert float(moved["fov"]) == pytest.approx(2 * np.arctan(0.5 / float(context["K"][0, 0, 1, 1])))
    # The orbit centre is among the predicted Gaussians (their median depth in front of the camera).
    means = pipeline.model.display_gaussians.means[0].double().numpy()
    depths = (means - c2w[:3, 3]) @ c2w[:3, 2]
    assert depth == pytest.approx(float(np.median(depths[depths > 0])), rel=0.05)
    moved.clear()
    for callback in client.camera.callbacks:
        callback(client.camera)
    assert moved == {}  # only once: the user's own moves are never overridden


def test_ns_export_writes_a_standard_splat(trained_run, tmp_path, most_gaussians):
    pytest.importorskip(
        "open3d", reason="ns-export imports open3d, which needs libusb-1.0 (scripts/setup.sh)"
    )
    from nerfstudio.scripts.exporter import ExportGaussianSplat

    from zpressor_ns.export import read_ply

    ExportGaussianSplat(load_config=trained_run.get_base_dir() / "config.yml", output_dir=tmp_path).main()
    ply = read_ply(tmp_path / "splat.ply")
    rest = [name for name in ply if name.startswith("f_rest_")]
    assert len(rest) == 45  # SH degree 3: 15 coefficients x 3 colours
    assert 0 < len(ply["x"]) <= most_gaussians(trained_run)


def test_ns_render_interpolate_flies_between_the_display_scene_cameras(trained_run, tmp_path, monkeypatch):
    import nerfstudio.scripts.render as ns_render
    from PIL import Image

    # Nerfstudio refuses to start without an ffmpeg binary, even for image output; frames need none.
    monkeypatch.setattr(ns_render.install_checks, "check_ffmpeg_installed", lambda: None)
    config_path = trained_run.get_base_dir() / "config.yml"
    steps = 3
    ns_render.RenderInterpolated(
        load_config=config_path, output_path=tmp_path / "frames", output_format="images",
        image_format="png", interpolation_steps=steps,
    ).main()  # fmt: skip
    frames = sorted((tmp_path / "frames").glob("*.png"))
    _, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    cameras = pipeline.datamanager.eval_dataset.cameras
    assert len(frames) == steps * (len(cameras) - 1)
    first = np.asarray(Image.open(frames[0]), dtype=np.float32) / 255
    assert first.shape == (*trained_run.pipeline.datamanager.image_shape, 3)
    # The path starts at the display scene's first context camera: the same image as the viewer's.
    with torch.no_grad():
        expected = pipeline.model.get_outputs_for_camera(cameras[0:1])["rgb"].numpy()
    np.testing.assert_allclose(first, expected, atol=1.5 / 255)
    middle = np.asarray(Image.open(frames[1]), dtype=np.float32) / 255
    assert np.abs(middle - first).mean() > 1e-3  # the camera moves along the path


def test_loading_a_checkpoint_of_another_method_is_refused(
    trained_run, synthetic_root, tmp_path, method_config
):
    other = method_config("depthsplat-small", synthetic_root, tmp_path, steps=1)
    other.load_dir = trained_run.get_checkpoint_dir()
    with pytest.raises(RuntimeError, match="does not match this model"):
        train_loop(local_rank=0, world_size=1, config=other)


def test_model_starts_from_given_weights_says_so_and_refuses_mismatched_ones(tmp_path, capsys):
    from nerfstudio.data.scene_box import SceneBox

    from zpressor_ns.encoders import build_encoder
    from zpressor_ns.nerfstudio.model import FeedForwardModelConfig

    torch.manual_seed(3)
    source = build_encoder("zpressor-depthsplat", "small")
    path = tmp_path / "converted.pt"
    torch.save(source.state_dict(), path)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = FeedForwardModelConfig(method="zpressor-depthsplat", preset="small", pretrained=path).setup(
        scene_box=box, num_train_data=1
    )
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    # Said on the console at start-up (Nerfstudio goes on to say "No Nerfstudio checkpoint to load").
    total = len(source.state_dict())
    assert f"Encoder weights from {path}: converted file, {total}/{total} encoder tensors loaded" in " ".join(
        capsys.readouterr().out.split()
    )
    with pytest.raises(ValueError, match="does not fit"):
        FeedForwardModelConfig(method="depthsplat", preset="small", pretrained=path).setup(
            scene_box=box, num_train_data=1
        )


def test_lpips_notice_is_given_once_and_only_where_lpips_is_used(monkeypatch, caplog):
    """Without local VGG16 weights LPIPS is off: the viewer, export and fly-throughs (which build the model but
    never score) say nothing about it; scoring says so once."""
    import logging

    from nerfstudio.data.scene_box import SceneBox

    from zpressor_ns import metrics
    from zpressor_ns.nerfstudio.model import FeedForwardModelConfig

    monkeypatch.setattr(metrics, "find_vgg16_weights", lambda explicit=None: None)
    metrics._warn_no_lpips.cache_clear()
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    with caplog.at_level(logging.WARNING):
        model = FeedForwardModelConfig(method="zpressor-depthsplat", preset="small").setup(
            scene_box=box, num_train_data=1
        )
        assert not [r for r in caplog.records if "LPIPS" in r.getMessage()]
        images = torch.rand(2, 3, 16, 16)
        for _ in range(2):
            assert set(model.score_views(images, images)) == {"psnr", "ssim"}
    notices = [r for r in caplog.records if "LPIPS" in r.getMessage()]
    assert len(notices) == 1 and "vgg16-397923af.pth" in notices[0].getMessage()
    metrics._warn_no_lpips.cache_clear()


@pytest.mark.parametrize(
    ("device", "tf32", "expected"),
    [("cuda", True, "high"), ("cuda", False, "highest"), ("cpu", True, "highest")],
)
def test_model_sets_tf32_matmuls_only_for_cuda(device, tf32, expected):
    """The original trains and evaluates fp32 with TF32 matmuls on the GPU; CPU math stays exact."""
    from nerfstudio.data.scene_box import SceneBox

    from zpressor_ns.nerfstudio.model import FeedForwardModelConfig

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        # Built on the CPU either way: the model moves to its device later, in the pipeline.
        config = FeedForwardModelConfig(method="zpressor-depthsplat", preset="small", tf32_matmul=tf32)
        config.setup(scene_box=box, num_train_data=1, device=device)
        assert torch.get_float32_matmul_precision() == expected
    finally:
        torch.set_float32_matmul_precision(before)


def test_export_command_writes_any_scene(trained_run, tmp_path, most_gaussians):
    from zpressor_ns.cli import main
    from zpressor_ns.export import read_ply

    keys = json.loads(trained_run.pipeline.datamanager.eval_index.read_text())
    scene = sorted(keys)[-1]
    out = tmp_path / "scene.ply"
    config = str(trained_run.get_base_dir() / "config.yml")
    assert (
        main(["export", "--load-config", config, "--output", str(out), "--scene", scene, "--views", "8"]) == 0
    )
    ply = read_ply(out)
    assert 0 < len(ply["x"]) <= most_gaussians(trained_run)
    assert len([k for k in ply if k.startswith("f_rest_")]) == 45
    assert main(["export", "--load-config", config, "--output", str(out), "--scene", "no-such-scene"]) == 2


def test_render_command_writes_a_fly_through_gif_without_ffmpeg(trained_run, tmp_path, monkeypatch):
    """``zpressor-ns render``: the display scene flown along its context cameras, as a GIF written by Pillow."""
    import shutil

    from PIL import Image, ImageSequence

    from zpressor_ns.cli import main

    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)  # as on a machine without ffmpeg
    config = trained_run.get_base_dir() / "config.yml"
    gif, frames_dir = tmp_path / "flight.gif", tmp_path / "frames"
    argv = ["render", "--load-config", str(config), "--output", str(gif), "--frames", "5"]
    assert main([*argv, "--frames-dir", str(frames_dir)]) == 0
    frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(Image.open(gif))]
    shape = tuple(trained_run.pipeline.datamanager.image_shape)
    assert len(frames) == 5 and frames[0].shape == (*shape, 3)
    assert len(list(frames_dir.glob("frame_*.png"))) == 5
    # It starts at the first context camera (in frame order) and moves from there.
    _, pipeline, _, _ = eval_setup(config, test_mode="inference")
    datamanager = pipeline.datamanager
    context = datamanager.display_context(datamanager.display_scene, datamanager.display_num_context)
    first = context["index"][0].argmin()
    views = {key: context[key][:, first : first + 1] for key in ("c2w", "K", "near", "far")}
    with torch.no_grad():
        expected = pipeline.model.render(pipeline.model.display_gaussians, views, shape).color[0, 0]
    png = np.asarray(Image.open(frames_dir / "frame_0000.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(png, expected.permute(1, 2, 0).clamp(0, 1).numpy(), atol=1.5 / 255)
    assert np.abs(frames[-1].astype(float) - frames[0].astype(float)).mean() > 1.0
    assert main([*argv[:-2], "--output", str(tmp_path / "flight.mp4")]) == 2  # GIFs only, said before loading
