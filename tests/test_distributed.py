"""Two-process data-parallel training on CPU (gloo), as ``ns-train --machine.num-devices 2`` runs it.

Each process runs what Nerfstudio's ``_distributed_worker`` runs (a gloo process group, the local process
group, then ``train_loop``'s seeding, ``Trainer.setup`` and ``train``). The launcher itself is not used:
Nerfstudio 1.1.5's asserts ``torch.cuda.is_available()`` and one GPU per process even for
``--machine.device-type cpu``, so on a machine without GPUs ``ns-train`` cannot start a CPU run of several
processes (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import copy
import socket

import pytest
import torch

pytest.importorskip(
    "nerfstudio", reason="drives Nerfstudio, which the core does not need (the GPU machine has none)"
)

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(config, rank: int) -> dict:
    """``train_loop`` of one process, recording the scenes of its batches and its final weights."""
    from nerfstudio.scripts.train import _set_random_seed

    from zpressor_ns.nerfstudio.datamanager import FeedForwardDataManager

    scenes: list[str] = []
    next_train = FeedForwardDataManager.next_train

    def recording_next_train(self, step: int) -> dict:
        batch = next_train(self, step)
        scenes.extend(batch["scene"])
        return batch

    FeedForwardDataManager.next_train = recording_next_train
    try:
        _set_random_seed(config.machine.seed + rank)
        trainer = config.setup(local_rank=rank, world_size=WORLD_SIZE)
        trainer.setup()
        trainer.train()
    finally:
        FeedForwardDataManager.next_train = next_train
    model = trainer.pipeline.model
    return {
        "shard": trainer.pipeline.datamanager.train_data.keys(),
        "scenes": scenes,
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def _worker(rank: int, config, port: int, out) -> None:
    from nerfstudio.utils import comms

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=WORLD_SIZE, rank=rank)
    comms.LOCAL_PROCESS_GROUP = dist.new_group(list(range(WORLD_SIZE)))
    try:
        full = _train(config, rank)
        comms.synchronize()  # rank 0 has written its checkpoints
        resumed_config = copy.deepcopy(config)
        resumed_config.timestamp = "resumed"
        resumed_config.load_dir = config.get_checkpoint_dir()
        resumed_config.load_step = 1
        resumed_config.max_num_iterations = 1
        resumed = _train(resumed_config, rank)
        torch.save({"full": full, "resumed": resumed}, out / f"rank{rank}.pt")
        comms.synchronize()
    finally:
        dist.destroy_process_group()


def test_two_cpu_processes_train_their_shards_in_step_and_resume(synthetic_root, tmp_path, method_config):
    config = method_config("zpressor-depthsplat-small", synthetic_root, tmp_path, steps=3)
    config.machine.num_devices = WORLD_SIZE
    config.steps_per_save = 1
    config.save_only_latest_checkpoint = False
    config.steps_per_eval_image = 0
    config.pipeline.datamanager.num_target_views = 2
    mp.spawn(_worker, args=(config, _free_port(), tmp_path), nprocs=WORLD_SIZE, join=True)

    records = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    shards = [record["full"]["shard"] for record in records]
    assert sorted(shards[0] + shards[1]) == sorted(set(shards[0] + shards[1]))  # disjoint
    assert len(shards[0] + shards[1]) == 3  # together, the 3 training scenes
    for record, shard in zip(records, shards):
        assert record["full"]["scenes"] and set(record["full"]["scenes"]) <= set(shard)  # its own shard only
    # Gradients are averaged across the processes: the weights stay identical.
    for name, tensor in records[0]["full"]["weights"].items():
        assert torch.equal(records[1]["full"]["weights"][name], tensor), name
    # Resumed in both processes from rank 0's checkpoint of step 1, step 2 ends where the full run did.
    for record in records:
        for name, tensor in records[0]["full"]["weights"].items():
            assert torch.equal(record["resumed"]["weights"][name], tensor), name
    checkpoints = sorted(p.name for p in config.get_checkpoint_dir().glob("*.ckpt"))
    assert checkpoints == ["step-000000001.ckpt", "step-000000002.ckpt"]
    state = torch.load(config.get_checkpoint_dir() / checkpoints[-1], map_location="cpu")
    assert any(key.startswith("_model.module.") for key in state["pipeline"])  # saved through the DDP wrapper
