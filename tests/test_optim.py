"""The training recipe's optimizer and schedule (nerfstudio configs)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "nerfstudio", reason="drives Nerfstudio, which the core does not need (the GPU machine has none)"
)

from zpressor_ns.nerfstudio.optim import (  # noqa: E402
    ClippedAdamW,
    OneCycleSchedulerConfig,
    SplitLRAdamWConfig,
    one_cycle_factor,
)


@pytest.mark.parametrize("total", [1010, 110])
def test_one_cycle_factor_matches_torch(total):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2e-4)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-4, total_steps=total, pct_start=0.01, cycle_momentum=False, anneal_strategy="cos"
    )
    for step in range(total):
        expected = optimizer.param_groups[0]["lr"] / 2e-4
        assert one_cycle_factor(step, total) == pytest.approx(expected, rel=1e-9, abs=1e-15), step
        optimizer.step()
        reference.step()


def test_split_learning_rates_and_schedule_per_group():
    main, vit = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    config = SplitLRAdamWConfig(lr=2e-4, pretrained_lr=2e-6)
    optimizer = config.setup([{"params": [main], "name": "main"}, {"params": [vit], "name": "pretrained"}])
    scheduler = OneCycleSchedulerConfig(max_steps=95).setup().get_scheduler(optimizer, lr_init=config.lr)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs == pytest.approx([2e-4 / 25, 2e-6 / 25])  # OneCycle starts at max_lr / div_factor
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    ratio = optimizer.param_groups[0]["lr"] / optimizer.param_groups[1]["lr"]
    assert ratio == pytest.approx(100.0)
    assert all(isinstance(g["lr"], float) for g in optimizer.param_groups)  # no numpy scalars in checkpoints


def test_clipping_uses_the_global_norm_over_all_groups():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = ClippedAdamW([{"params": [a]}, {"params": [b]}], lr=0.1, max_grad_norm=0.5)
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])  # global norm 5
    optimizer.step()
    assert a.grad.item() == pytest.approx(0.3, rel=1e-5)  # scaled by 0.5 / 5, jointly
    assert b.grad.item() == pytest.approx(0.4, rel=1e-5)
