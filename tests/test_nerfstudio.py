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

from zpressor_ns.encoders import encoder_config, registered_method_names, resolve_method
from zpressor_ns.render import render_gaussians

METHODS = set(registered_method_names())
DATAPARSERS = {"re10k", "acid", "dl3dv"}


def most_gaussians(run) -> int:
    """The most Gaussians a trained run's scene can have: anchors x pixels x Gaussians per pixel."""
    config = encoder_config(*resolve_method(run.method_name))
    height, width = run.pipeline.datamanager.image_shape
    return config.num_anchors * height * width * getattr(config, "gaussians_per_pixel", 1)


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


def test_ns_export_writes_a_standard_splat(trained_run, tmp_path):
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


def test_model_starts_from_given_weights_and_refuses_mismatched_ones(tmp_path):
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
    with pytest.raises(ValueError, match="does not fit"):
        FeedForwardModelConfig(method="depthsplat", preset="small", pretrained=path).setup(
            scene_box=box, num_train_data=1
        )


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


def test_export_command_writes_any_scene(trained_run, tmp_path):
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
