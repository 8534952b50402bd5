"""The Nerfstudio Model of a feed-forward splat method (Nerfstudio face; holds no model math).

It wraps a core encoder (``zpressor_ns.encoders.build_encoder``) and the renderer, computes the
original losses and metrics, and serves the viewer and ``ns-export`` from the Gaussians of ONE cached
scene: the viewer calls ``get_outputs_for_camera`` many times a second, so it never runs the encoder.

It subclasses ``SplatfactoModel`` only as an interface: Nerfstudio's viewer and exporter check
``isinstance(model, SplatfactoModel)`` and read ``gauss_params``; none of Splatfacto's per-scene
optimisation machinery is used (``populate_modules`` and friends are replaced).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.models.splatfacto import SplatfactoModel
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

from zpressor_ns import losses, metrics
from zpressor_ns.cameras import opengl_to_opencv_c2w, pixel_to_normalised_K, to_homogeneous
from zpressor_ns.encoders import ZPressorOptions, build_encoder
from zpressor_ns.encoders.registry import PRESET_NAMES, method_names
from zpressor_ns.export import covariance_to_scale_rotation
from zpressor_ns.gaussians import Gaussians
from zpressor_ns.render import RenderOutput, render_gaussians

# The registry's methods, as choices for the command line.
MethodName = Literal[method_names()]  # type: ignore[valid-type]
PresetName = Literal[PRESET_NAMES]  # type: ignore[valid-type]


@dataclass
class FeedForwardModelConfig(ModelConfig):
    """A feed-forward encoder (any registered family, with or without ZPressor) + Gaussian renderer."""

    _target: type = field(default_factory=lambda: FeedForwardSplatModel)
    enable_collider: bool = False
    method: MethodName = "zpressor-depthsplat"
    """Encoder: zpressor-<family> or the <family> baseline (see zpressor_ns.encoders.registry)."""
    preset: PresetName = "paper"
    """Encoder size: the paper's configuration, or the small CPU one."""
    zpressor: ZPressorOptions = field(default_factory=ZPressorOptions)
    """ZPressor's options (layers, heads, the no-self-attention ablation, first anchor, clustering)."""
    num_anchors: int | Literal["auto"] | None = None
    """ZPressor anchors K (default: the preset's, 6 for the paper; "auto": the most that fit
    memory_budget_gb; ignored without ZPressor)."""
    memory_budget_gb: float | None = None
    """GPU memory budget used by num_anchors "auto" (the encoder's own memory model)."""
    view_chunk: int = 16
    """Context views pushed through the per-view CNN at once: memory stays flat as views grow."""
    checkpoint_view_chunks: bool = False
    """Recompute each view chunk's CNN in backward (training with many views on little memory)."""
    pretrained: Path | None = None
    """Official weights to start from: a published ZPressor checkpoint of the method's family, or a file the
    original initialises from (DepthSplat: Depth Anything V2, UniMatch GMFlow; MVSplat: UniMatch GMDepth);
    a local file, converted on load, every key accounted for."""
    lpips_weight: float = 0.05
    """Weight of the LPIPS (VGG) term of the image loss."""
    lpips_after_step: int = 0
    """The LPIPS term counts from this training step on (pixelSplat: 150,000; before it, MSE alone)."""
    ib_weight: float = 1e-5
    """Weight of the information-bottleneck KL on the upsampled features."""
    intermediate_weight: float = 0.9
    """Weight of the image loss on the render from the intermediate (low-resolution) depth."""
    vgg16_weights: Path | None = None
    """torchvision's vgg16-397923af.pth for LPIPS (default: $ZPRESSOR_VGG16 or torch's hub cache).
    Without it training and evaluation run without LPIPS and say so once."""
    render_backend: Literal["auto", "gsplat", "torch"] = "auto"
    """Rasterizer: gsplat on CUDA, the exact PyTorch rasterizer on CPU."""
    sh_degree: int = 3
    """SH degree written by ns-export (standard 3DGS viewers read degree 3; the model predicts 4)."""
    background_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background of training/evaluation renders (the original uses black)."""
    eval_seed: int | None = 111123
    """Outside training, the encoder's random draws (pixelSplat's depth samples and view-embedding shuffle)
    come from a generator seeded with this for every batch, so scores and renders repeat exactly; None:
    torch's global RNG, as the original's test step (whose draws then depend on the order of the scenes)."""
    deterministic: bool = False
    """Outside training, place pixelSplat's Gaussians at the most likely depth of each pixel (one each)
    instead of sampling three; the original samples in training and in its test step (the paper's scores)."""
    tf32_matmul: bool = True
    """On CUDA, fp32 matmuls run as TF32 (``torch.set_float32_matmul_precision("high")``), as the
    original's main.py sets for its whole run; ZPressor's attention is bf16 either way. CPU stays exact."""

    def __post_init__(self) -> None:
        if self.method not in method_names():
            raise ValueError(f"unknown method {self.method!r}; choose one of {list(method_names())}")
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {list(PRESET_NAMES)}")


class FeedForwardSplatModel(SplatfactoModel):
    config: FeedForwardModelConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Nerfstudio's empty device marker is a parameter no loss reaches: DDP (find_unused_parameters off,
        # as every encoder parameter takes part in every step) would wait for its gradient forever.
        self.device_indicator_param.requires_grad_(False)

    def populate_modules(self) -> None:
        Model.populate_modules(self)  # not Splatfacto's: no per-scene Gaussians, strategy or LPIPS download
        if self.config.tf32_matmul and torch.device(self.kwargs.get("device", "cpu")).type == "cuda":
            # Process-wide, like the original: backward matmuls must use it too, so no scoped context.
            torch.set_float32_matmul_precision("high")
        self.encoder = build_encoder(
            self.config.method,
            self.config.preset,
            view_chunk=self.config.view_chunk,
            checkpoint_view_chunks=self.config.checkpoint_view_chunks,
            memory_budget_gb=self.config.memory_budget_gb,
            zpressor=self.config.zpressor,
        )
        if self.config.pretrained is not None:
            from zpressor_ns.pretrained import load_pretrained

            report = load_pretrained(self.encoder, self.config.pretrained)
            # On the console at start-up (Nerfstudio's next line may say "training from scratch", which
            # refers to its own checkpoints only).
            CONSOLE.print(f"Encoder weights from {self.config.pretrained}: {report.coverage()}", markup=False)
        # Training and evaluation render onto the configured background; the viewer's colour picker
        # (Splatfacto's ``set_background``, called before every viewer render) only changes viewer renders.
        self.viewer_background: tuple[float, float, float] | None = None
        self.crop_box: OrientedBox | None = None
        self.step = 0
        # The display scene: full Gaussians for rendering and raw splat tensors for the exporter.
        self.display_gaussians: Gaussians | None = None
        self.display_near_far = (1.0, 100.0)
        self.gauss_params: dict[str, Tensor] = {}

    # ---- the encoder and renderer ------------------------------------------------------------
    def encode(self, context: dict[str, Tensor], num_anchors: int | str | None = None):
        """The encoder's Gaussians for a batch of context views (see ``eval_seed`` and ``deterministic``)."""
        generator = None
        if not self.training and self.config.eval_seed is not None:
            generator = torch.Generator(device=context["image"].device).manual_seed(self.config.eval_seed)
        return self.encoder(
            context["image"],
            context["c2w"],
            context["K"],
            context["near"],
            context["far"],
            num_anchors=num_anchors or self.config.num_anchors,
            deterministic=self.config.deterministic and not self.training,
            generator=generator,
        )

    def render(
        self,
        gaussians: Gaussians,
        views: dict[str, Tensor],
        image_shape: tuple[int, int],
        centred_principal_point: bool = True,
        background: tuple[float, float, float] | None = None,
    ) -> RenderOutput:
        """Render into ``views`` (c2w, K, near, far of [B, T]); the original ignores cx, cy (centred).
        ``background`` defaults to the configured one."""
        return render_gaussians(
            gaussians,
            views["c2w"],
            views["K"],
            views["near"],
            views["far"],
            image_shape,
            background=background or tuple(float(c) for c in self.config.background_color),
            backend=self.config.render_backend,
            centred_principal_point=centred_principal_point,
        )

    def forward(self, batch: dict) -> dict:  # type: ignore[override]
        return self.get_outputs(batch)

    def get_outputs(self, batch: dict) -> dict:  # type: ignore[override]
        context, target = batch["context"], batch["target"]
        image_shape = tuple(target["image"].shape[-2:])
        encoded = self.encode(context)
        rendered = self.render(encoded, target, image_shape)
        outputs = {
            "rgb": rendered.color,
            "depth": rendered.depth,
            "anchors": encoded.anchors,
            "encoded": encoded,
        }
        if self.training and encoded.intermediate is not None:
            outputs["rgb_intermediate"] = self.render(encoded.intermediate, target, image_shape).color
        return outputs

    # ---- losses and metrics ------------------------------------------------------------------
    def _image_loss(
        self, prediction: Tensor, target: Tensor, prefix: str, weight: float
    ) -> dict[str, Tensor]:
        terms = {f"{prefix}mse": weight * losses.mse_loss(prediction, target)}
        counts = self.config.lpips_weight > 0 and self.step >= self.config.lpips_after_step
        lpips = self._lpips() if counts else None
        if lpips is not None:
            terms[f"{prefix}lpips"] = weight * self.config.lpips_weight * lpips(prediction, target).mean()
        return terms

    def get_loss_dict(
        self, outputs: dict, batch: dict, metrics_dict: dict | None = None
    ) -> dict[str, Tensor]:
        target = batch["target"]["image"]
        loss = self._image_loss(outputs["rgb"], target, "", 1.0)
        latent = getattr(outputs["encoded"], "latent", None)
        if self.config.ib_weight > 0 and latent is not None:
            loss["ib"] = self.config.ib_weight * losses.information_bottleneck_kl(latent)
        if "rgb_intermediate" in outputs and self.config.intermediate_weight > 0:
            loss.update(
                self._image_loss(
                    outputs["rgb_intermediate"], target, "intermediate_", self.config.intermediate_weight
                )
            )
        return loss

    def get_metrics_dict(self, outputs: dict, batch: dict) -> dict[str, Tensor]:
        with torch.no_grad():
            return {"psnr": metrics.psnr(outputs["rgb"], batch["target"]["image"]).mean()}

    @torch.no_grad()
    def score_views(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Per-view PSNR/SSIM(/LPIPS) of [V, 3, H, W] renders, as the original evaluation computes them."""
        scores = {"psnr": metrics.psnr(prediction, target), "ssim": metrics.ssim(prediction, target)}
        lpips = self._lpips()
        if lpips is not None:
            scores["lpips"] = lpips(prediction, target)
        return scores

    def get_image_metrics_and_images(
        self, outputs: dict, batch: dict
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        prediction, target = outputs["rgb"][0], batch["target"]["image"][0]
        scores = {k: float(v.mean()) for k, v in self.score_views(prediction, target).items()}
        # One row per target view: ground truth | prediction, as [H, W, 3] for the writers.
        rows = torch.cat([target, prediction.clamp(0, 1)], dim=-1)  # [V, 3, H, 2W]
        grid = torch.cat(list(rows), dim=-2).permute(1, 2, 0)
        images = {"img": grid}
        depth = outputs["depth"][0]
        images["depth"] = torch.cat(list(depth / depth.amax().clamp_min(1e-6)), dim=0)[..., None]
        return scores, images

    def _lpips(self) -> metrics.LPIPS | None:
        """LPIPS-VGG, built on first use (the viewer, export and fly-throughs never need it, so they never
        mention it); None without local VGG16 weights, said once. A fixed metric network: kept out of the
        module tree, so it is neither trained nor saved."""
        if "lpips" not in self.__dict__:
            self.__dict__["lpips"] = metrics.build_lpips(
                self.config.vgg16_weights, purpose="LPIPS loss and metric"
            )
        lpips = self.__dict__["lpips"]
        if lpips is not None and next(lpips.parameters()).device != self.device:
            lpips.to(self.device)
        return lpips

    # ---- parameters, state, callbacks ----------------------------------------------------------
    def get_param_groups(self) -> dict[str, list]:
        """One Nerfstudio group with two torch groups: the pretrained backbone and the rest (see optim.py)."""
        pretrained = self.encoder.pretrained_parameters()
        pretrained_ids = {id(p) for p in pretrained}
        main = [p for p in self.encoder.parameters() if id(p) not in pretrained_ids]
        groups = [{"params": main, "name": "main"}]
        if pretrained:
            groups.append({"params": pretrained, "name": "pretrained"})
        return {"encoder": groups}

    def get_training_callbacks(self, training_callback_attributes) -> list:
        return []

    def set_background(self, background_color: Tensor) -> None:
        """The viewer's background colour: used by viewer renders only, never by training or evaluation."""
        if background_color.shape != (3,):
            raise ValueError(f"a background colour is 3 values, got shape {tuple(background_color.shape)}")
        self.viewer_background = tuple(float(c) for c in background_color.tolist())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        # Splatfacto's version resizes per-scene Gaussians; ours has none in the state dict.
        return nn.Module.load_state_dict(self, state_dict, strict=strict, assign=assign)

    # ---- the viewer's and exporter's cached scene ------------------------------------------
    @torch.no_grad()
    def set_display_scene(self, context: dict[str, Tensor], num_anchors: int | None = None) -> Gaussians:
        """Predict and cache one scene's Gaussians (a batch of one context set)."""
        was_training = self.training
        self.eval()
        try:
            encoded = self.encode(context, num_anchors)
        finally:
            self.train(was_training)
        gaussians = Gaussians(
            encoded.means.float(),
            encoded.covariances.float(),
            encoded.harmonics.float(),
            encoded.opacities.float(),
            encoded.anchors,
        ).scene(0)
        self.display_gaussians = gaussians
        self.display_near_far = (float(context["near"][0, 0]), float(context["far"][0, 0]))
        self.gauss_params = splat_parameters(gaussians, self.config.sh_degree)
        return gaussians

    @torch.no_grad()
    def get_outputs_for_camera(
        self, camera: Cameras, obb_box: OrientedBox | None = None
    ) -> dict[str, Tensor]:
        if self.display_gaussians is None:
            raise RuntimeError("no scene is cached: the pipeline predicts one before the viewer renders")
        camera = camera.to(self.device)
        width, height = int(camera.width[0, 0]), int(camera.height[0, 0])
        c2w = opengl_to_opencv_c2w(to_homogeneous(camera.camera_to_worlds))
        K = pixel_to_normalised_K(camera.get_intrinsics_matrices(), width, height)
        near, far = self.display_near_far
        views = {
            "c2w": c2w[None],
            "K": K[None],
            "near": torch.full((1, len(camera)), near, device=self.device),
            "far": torch.full((1, len(camera)), far, device=self.device),
        }
        # Viewer cameras carry their own principal point: use it rather than assume the centre.
        rendered = self.render(
            self.display_gaussians,
            views,
            (height, width),
            centred_principal_point=False,
            background=self.viewer_background,
        )
        return {
            "rgb": rendered.color[0, 0].permute(1, 2, 0).clamp(0, 1),
            "depth": rendered.depth[0, 0][..., None],
            "accumulation": rendered.alpha[0, 0][..., None],
        }


def splat_parameters(gaussians: Gaussians, sh_degree: int) -> dict[str, Tensor]:
    """Splatfacto's raw tensors of a batch-of-one scene, as ``ns-export gaussian-splat`` reads them:
    means, log scales, wxyz quaternions, logit opacities [N, 1], SH DC [N, 3] and rest [N, D - 1, 3]."""
    device = gaussians.means.device
    scales, quats = covariance_to_scale_rotation(gaussians.covariances[0].double().cpu().numpy())
    coefficients = (sh_degree + 1) ** 2
    harmonics = gaussians.harmonics[0, :, :, :coefficients]  # colour-major [N, 3, D]
    opacities = gaussians.opacities[0].clamp(1e-7, 1 - 1e-7)
    return {
        "means": gaussians.means[0],
        "scales": torch.from_numpy(scales).log().float().to(device),
        "quats": torch.from_numpy(quats).float().to(device),
        "opacities": torch.logit(opacities)[:, None],
        "features_dc": harmonics[:, :, 0],
        "features_rest": harmonics[:, :, 1:].transpose(1, 2),
    }
