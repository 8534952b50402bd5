"""Each family's small preset learns: fitting one synthetic scene drives the training loss well below its start.

It trains with the product's recipe (AdamW with the global gradient norm clipped at 0.5, as the method
configs), at a learning rate and a step count where the loss falls to about a fifth of its start on the
machines tried; the assertion asks for half, a margin that rounding differences between CPUs cannot eat.
Without clipping, Adam at 2e-3 spiked at steps 18-22 on some machines and the test failed there.
"""

from __future__ import annotations

import pytest
import torch

from zpressor_ns import losses
from zpressor_ns.data.dataset import ExampleOptions, MultiSceneDataset
from zpressor_ns.data.eval_index import EvaluationIndex, IndexEntry
from zpressor_ns.data.readers import open_dataset
from zpressor_ns.data.synthetic import SYNTHETIC_FAR, SYNTHETIC_NEAR
from zpressor_ns.encoders import build_encoder
from zpressor_ns.render import render_gaussians


# (method, learning rate): MVSplat's fresh U-Nets and head take smaller steps smoothly (at 5e-4 its loss
# spiked twice in 30 steps; at 2e-4 it fell to 0.21-0.28 of its start over seeds 0-2).
@pytest.mark.parametrize(("method", "lr"), [("zpressor-depthsplat", 5e-4), ("zpressor-mvsplat", 2e-4)])
def test_small_zpressor_preset_overfits_one_scene(method, lr, synthetic_root):
    torch.manual_seed(0)
    reader = open_dataset(synthetic_root / "re10k", "train")
    key = reader.keys()[0]
    index = EvaluationIndex({key: IndexEntry(context=(0, 8, 16, 24), target=(4, 12))}, "test")
    options = ExampleOptions(image_shape=(64, 64), near=SYNTHETIC_NEAR, far=SYNTHETIC_FAR)
    example = MultiSceneDataset(reader, index, options)[0]
    context = {k: v[None] for k, v in example["context"].items()}
    target = {k: v[None] for k, v in example["target"].items()}

    encoder = build_encoder(method, "small")
    encoder.train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=0.0)
    history = []
    for _ in range(30):
        out = encoder(
            context["image"], context["c2w"], context["K"], context["near"], context["far"], num_anchors=2
        )
        rendered = render_gaussians(out, target["c2w"], target["K"], target["near"], target["far"], (64, 64))
        loss = losses.mse_loss(rendered.color, target["image"])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 0.5)
        optimizer.step()
        history.append(loss.item())
    start, end = sum(history[:3]) / 3, sum(history[-3:]) / 3
    assert end < 0.5 * start, f"loss went from {start:.4f} to {end:.4f}"
