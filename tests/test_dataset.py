"""MultiSceneDataset: example contract, skipping bad scenes, evaluation order, workers, sharding."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from zpressor_ns.data.dataset import (
    DEPTH_RANGES,
    ExampleOptions,
    MultiSceneDataset,
    SharedStep,
    SourceGroupedShuffle,
)
from zpressor_ns.data.eval_index import EvaluationIndex, checked_keys
from zpressor_ns.data.readers import open_dataset
from zpressor_ns.data.samplers import BoundedSampler
from zpressor_ns.data.scene import SceneError
from zpressor_ns.data.shims import resize_images

writers = pytest.importorskip("zpressor_ns.data.writers")

HEIGHT, WIDTH = 12, 20


def forward_walk(num_frames: int) -> torch.Tensor:
    c2w = torch.eye(4).repeat(num_frames, 1, 1)
    c2w[:, 2, 3] = torch.arange(num_frames, dtype=torch.float32) * 0.1
    c2w[:, 0, 3] = torch.arange(num_frames, dtype=torch.float32) * 0.02
    return c2w


def write_dataset(root: Path, lengths: dict[str, int], split: str = "train") -> Path:
    generator = torch.Generator().manual_seed(0)
    scenes = []
    for key, num_frames in lengths.items():
        images = torch.randint(0, 256, (num_frames, HEIGHT, WIDTH, 3), dtype=torch.uint8, generator=generator)
        K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 1.5, 0.5], [0.0, 0.0, 1.0]]).expand(num_frames, 3, 3)
        scenes.append(writers.ChunkScene(key, images, forward_walk(num_frames), K, torch.arange(num_frames)))
    writers.write_re10k_chunks(root, split, scenes, scenes_per_chunk=2)
    return root


def poison_pose(root: Path, key: str, split: str = "train") -> None:
    """Put a NaN into one scene's cameras, rewriting its chunk."""
    index = json.loads((root / split / "index.json").read_text())
    path = root / split / index[key]
    chunk = torch.load(path, weights_only=True)
    for item in chunk:
        if item["key"] == key:
            item["cameras"][1, 8] = float("nan")
    torch.save(chunk, path)


def small_sampler(**overrides) -> BoundedSampler:
    settings = dict(
        num_context=3,
        num_target=2,
        min_gap=6,
        max_gap=8,
        initial_min_gap=3,
        initial_max_gap=3,
        warm_up_steps=10,
    )
    return BoundedSampler(**{**settings, **overrides})


def test_training_example_follows_the_data_contract(tmp_path):
    reader = open_dataset(write_dataset(tmp_path, {"a": 12, "b": 15}), "train")
    options = ExampleOptions(
        image_shape=(8, 8), near=DEPTH_RANGES["re10k"].near, far=DEPTH_RANGES["re10k"].far
    )
    dataset = MultiSceneDataset(reader, small_sampler(), options)
    assert len(dataset) == 2 and dataset.training
    example = dataset[1]
    assert example["scene"] == "b"
    for part, count in (("context", 3), ("target", 2)):
        views = example[part]
        assert views["image"].shape == (count, 3, 8, 8) and views["image"].dtype == torch.float32
        assert views["c2w"].shape == (count, 4, 4) and views["K"].shape == (count, 3, 3)
        assert views["index"].dtype == torch.int64 and views["index"].shape == (count,)
        assert torch.equal(views["near"], torch.ones(count)) and torch.equal(
            views["far"], torch.full((count,), 200.0)
        )
    batch = default_collate([dataset[0], dataset[1]])
    assert batch["context"]["image"].shape == (2, 3, 3, 8, 8) and batch["scene"] == ["a", "b"]


def test_without_resize_views_are_the_stored_frames(tmp_path):
    reader = open_dataset(write_dataset(tmp_path, {"a": 12}), "train")
    dataset = MultiSceneDataset(reader, small_sampler(), ExampleOptions(image_shape=(HEIGHT, WIDTH)))
    example = dataset[0]
    scene = reader.scene("a")
    for part in ("context", "target"):
        index = example[part]["index"]
        assert torch.equal(example[part]["image"], scene.load_images(index.tolist()))
        assert torch.equal(example[part]["c2w"], scene.c2w[index])
        assert torch.allclose(example[part]["K"], scene.K[index])


def test_same_step_same_example_and_augmentation_mirrors_cameras(tmp_path):
    reader = open_dataset(write_dataset(tmp_path, {"a": 30}), "train")
    options = ExampleOptions(image_shape=(HEIGHT, WIDTH), augment=True)
    dataset = MultiSceneDataset(reader, small_sampler(), options, seed=3)
    first, again = dataset[0], dataset[0]
    assert torch.equal(first["context"]["image"], again["context"]["image"])
    flipped = 0
    scene = reader.scene("a")
    for step in range(30):
        dataset.step.value = step
        example = dataset[0]
        stored = scene.c2w[example["context"]["index"]]
        if not torch.equal(example["context"]["c2w"], stored):
            flipped += 1
            mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
            assert torch.allclose(example["context"]["c2w"], mirror @ stored @ mirror)
    assert 5 < flipped < 25


def test_bad_and_short_scenes_are_skipped_with_one_warning_each(tmp_path, caplog):
    root = write_dataset(tmp_path, {"good1": 12, "short": 5, "nanpose": 12, "good2": 12})
    poison_pose(root, "nanpose")
    dataset = MultiSceneDataset(
        open_dataset(root, "train"), small_sampler(), ExampleOptions(image_shape=(8, 8))
    )
    dataset.step.value = 100  # past the warm-up: "short" (5 frames) cannot fit a gap of 6
    with caplog.at_level(logging.WARNING):
        scenes = [dataset[i]["scene"] for _ in range(3) for i in range(len(dataset))]
    assert set(scenes) == {"good1", "good2"}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert any("'short'" in w and "5 frames" in w for w in warnings)
    assert any("'nanpose'" in w and "NaN" in w for w in warnings)


def rewrite_scene(root: Path, key: str, change, split: str = "train") -> None:
    """Apply ``change`` to one scene dict of its chunk, rewriting the chunk."""
    index = json.loads((root / split / "index.json").read_text())
    path = root / split / index[key]
    chunk = torch.load(path, weights_only=True)
    for item in chunk:
        if item["key"] == key:
            change(item)
    torch.save(chunk, path)


def png_bytes(image: Image.Image) -> torch.Tensor:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def test_one_bad_file_never_kills_training(tmp_path, caplog, monkeypatch):
    # Real failures seen by a user: a garbage chunk entry (IndexError/KeyError/AttributeError inside
    # the reader), a frame too large for PIL (DecompressionBombError) and a truncated chunk file.
    keys = ["good1", "junk", "bomb", "good2", "cut1", "cut2"]
    root = write_dataset(tmp_path, dict.fromkeys(keys, 12))  # two scenes per chunk
    rewrite_scene(root, "junk", lambda item: item.update(images=[None] * 12))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", HEIGHT * WIDTH)  # PIL refuses over twice this
    huge = png_bytes(Image.new("RGB", (40, 40)))
    rewrite_scene(root, "bomb", lambda item: item.update(images=[huge] * 12))
    cut = root / "train" / json.loads((root / "train" / "index.json").read_text())["cut1"]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])

    dataset = MultiSceneDataset(
        open_dataset(root, "train"), small_sampler(), ExampleOptions(image_shape=(8, 8))
    )
    with caplog.at_level(logging.WARNING):
        scenes = []
        for step in range(3):
            dataset.step.value = step
            scenes += [dataset[i]["scene"] for i in range(len(dataset))]
    assert set(scenes) == {"good1", "good2"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    for key, reason in (("junk", "not encoded images"), ("bomb", "too large"), ("cut1", "cannot be read")):
        assert any(f"scene {key!r}" in w and reason in w for w in warnings), key
    assert any("'cut2'" in w and cut.name in w for w in warnings)


def test_huge_frames_are_decoded_reduced_with_one_warning(tmp_path, caplog):
    reader = open_dataset(write_dataset(tmp_path, {"a": 12}), "train")
    options = ExampleOptions(image_shape=(2, 4))  # 12x20 frames are 5 times the 2x4 needed
    dataset = MultiSceneDataset(reader, small_sampler(), options)
    with caplog.at_level(logging.WARNING):
        examples = [dataset[0], dataset[0]]
    assert [r.getMessage() for r in caplog.records].count(
        "scene 'a': frames are 20x12, over 4 times the 4x2 used; decoding them 2 times smaller "
        "(store downscaled frames to save decoding time)"
    ) == 1
    images = examples[0]["context"]["image"]
    direct = resize_images(reader.scene("a").load_images(examples[0]["context"]["index"].tolist()), (2, 4))
    assert images.shape == (3, 3, 2, 4) and (images - direct).abs().mean() < 0.05


def test_transparent_frames_take_the_configured_background(tmp_path):
    root = write_dataset(tmp_path, {"a": 12})
    clear = png_bytes(Image.new("RGBA", (WIDTH, HEIGHT), (10, 20, 30, 0)))
    rewrite_scene(root, "a", lambda item: item.update(images=[clear] * 12))
    reader = open_dataset(root, "train")
    options = ExampleOptions(image_shape=(HEIGHT, WIDTH), background=(1.0, 0.5, 0.0))
    example = MultiSceneDataset(reader, small_sampler(), options)[0]
    expected = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1).expand(3, 3, HEIGHT, WIDTH)
    assert torch.equal(example["context"]["image"], expected)


def test_all_scenes_bad_gives_a_clear_error_not_a_loop(tmp_path):
    reader = open_dataset(write_dataset(tmp_path, {"s1": 4, "s2": 5}), "train")
    dataset = MultiSceneDataset(reader, small_sampler(), ExampleOptions(image_shape=(8, 8)))
    dataset.step.value = 100
    with pytest.raises(SceneError, match="none of the 2 training scenes is usable"):
        dataset[0]


def test_evaluation_uses_the_index_in_reader_order_and_raises_on_bad_entries(tmp_path, caplog):
    reader = open_dataset(write_dataset(tmp_path, {"c": 12, "a": 12, "b": 12}, split="test"), "test")
    index_path = tmp_path / "index_eval.json"
    index_path.write_text(
        json.dumps(
            {
                "b": {"context": [0, 4, 8], "target": [1, 2]},
                "a": {"context": [1, 5, 9], "target": [3, 11]},
                "gone": {"context": [0, 1, 2], "target": [3, 4]},
                "c": {"context": [0, 5, 20], "target": [2, 3]},
            }
        )
    )
    with caplog.at_level(logging.WARNING):
        dataset = MultiSceneDataset(
            reader, EvaluationIndex.load(index_path), ExampleOptions(image_shape=(8, 8))
        )
    assert "1 of 4 index scenes are not in the data (e.g. gone)" in caplog.text
    assert not dataset.training and dataset.keys() == [k for k in reader.keys() if k != "gone"]
    by_scene = {dataset.keys()[i]: i for i in range(len(dataset))}
    example = dataset[by_scene["a"]]
    assert example["context"]["index"].tolist() == [1, 5, 9] and example["target"]["index"].tolist() == [
        3,
        11,
    ]
    with pytest.raises(SceneError, match=r"index_eval\.json asks scene 'c' for frames \[20\]"):
        dataset[by_scene["c"]]


def test_index_checked_before_evaluation(tmp_path, caplog):
    reader = open_dataset(write_dataset(tmp_path, {"a": 12, "b": 12, "c": 6}, split="test"), "test")
    path = tmp_path / "index.json"
    path.write_text(
        json.dumps(
            {
                "a": {"context": [0, 4, 8], "target": [1, 2]},
                "b": {"context": [0, 4], "target": [1, 11]},
                "c": {"context": [0, 2, 4], "target": [7, 9]},  # past the end of the 6-frame scene
            }
        )
    )
    index = EvaluationIndex.load(path)
    assert index.fewest_context_views == ("b", 2)
    keys = index.report_missing(reader.keys())
    with pytest.raises(SceneError, match=r"does not fit 1 of the 3 scenes(.|\n)*'c' for frames \[7, 9\]"):
        checked_keys(index, reader, keys, strict=True)  # a benchmark covers the whole index or nothing
    with caplog.at_level(logging.WARNING):
        assert checked_keys(index, reader, keys, strict=False) == ["a", "b"]
    assert "leaving scene 'c' out of evaluation" in caplog.text

    path.write_text(json.dumps({"c": {"context": [0, 9], "target": [1]}}))
    with pytest.raises(SceneError, match="does not fit 1 of the 1 scenes"):
        checked_keys(EvaluationIndex.load(path), reader, ["c"], strict=False)  # nothing left to score

    path.write_text(json.dumps({"x": {"context": [0, 1], "target": [2]}, "y": None}))
    with pytest.raises(
        SceneError, match=r"none of the 1 scenes of evaluation index .*index\.json \(e\.g\. x\)"
    ):
        EvaluationIndex.load(path).report_missing(reader.keys())
    path.write_text(json.dumps({"y": None}))
    with pytest.raises(SceneError, match="names no scene"):
        EvaluationIndex.load(path)


def test_first_usable_scene_skips_bad_ones_and_names_why_none_fits(tmp_path, caplog):
    root = write_dataset(tmp_path, {"a": 3, "b": 12, "c": 12})  # "a": too short even at step 0
    poison_pose(root, "b")
    dataset = MultiSceneDataset(
        open_dataset(root, "train"), small_sampler(), ExampleOptions(image_shape=(8, 8))
    )
    with caplog.at_level(logging.WARNING):
        assert dataset.first_usable_scene() == "c"
    assert "'a'" in caplog.text and "'b'" in caplog.text
    assert {dataset[i]["scene"] for i in range(3)} == {"c"}  # the probe's findings carry into training

    sampler = small_sampler(num_context=14, num_target=2)  # 14 context views: no scene is long enough
    dataset = MultiSceneDataset(open_dataset(root, "train"), sampler, ExampleOptions(image_shape=(8, 8)))
    with pytest.raises(
        SceneError, match=r"none of the 3 training scenes gives a training example with 14 context"
    ):
        dataset.first_usable_scene()


def test_shards_are_disjoint_contiguous_and_cover_everything(tmp_path):
    reader = open_dataset(write_dataset(tmp_path, {f"s{i}": 10 for i in range(7)}), "train")
    dataset = MultiSceneDataset(reader, small_sampler(), ExampleOptions(image_shape=(8, 8)))
    shards = [dataset.shard(rank, 3).keys() for rank in range(3)]
    assert sum(shards, []) == dataset.keys()
    assert [len(s) for s in shards] == [2, 2, 3]
    assert dataset.shard(1, 3).keys() == shards[1]  # deterministic
    with pytest.raises(ValueError, match="rank 3"):
        dataset.shard(3, 3)
    subset = MultiSceneDataset(
        reader, small_sampler(), ExampleOptions(image_shape=(8, 8)), scene_keys=["s4", "s1"]
    )
    assert subset.keys() == ["s1", "s4"]


def test_grouped_shuffle_keeps_chunks_together(tmp_path):
    # write_dataset puts two scenes per chunk: 7 scenes -> chunks {s0,s1} {s2,s3} {s4,s5} {s6}.
    reader = open_dataset(write_dataset(tmp_path, {f"s{i}": 10 for i in range(7)}), "train")
    dataset = MultiSceneDataset(reader, small_sampler(), ExampleOptions(image_shape=(8, 8)))
    chunk_of = {key: str(reader.source_of(key)) for key in dataset.keys()}
    sampler = SourceGroupedShuffle(dataset, seed=1)
    orders = [list(sampler), list(sampler)]
    for order in orders:
        assert sorted(order) == list(range(7))
        chunks = [chunk_of[dataset.keys()[i]] for i in order]
        runs = [c for i, c in enumerate(chunks) if i == 0 or c != chunks[i - 1]]
        assert len(runs) == 4  # each chunk's scenes are visited in one run
    assert orders[0] != orders[1]
    assert list(SourceGroupedShuffle(dataset, seed=1)) == orders[0]


def test_display_example_is_deterministic(tmp_path):
    reader = open_dataset(write_dataset(tmp_path, {"a": 20, "b": 20}), "train")
    dataset = MultiSceneDataset(reader, small_sampler(), ExampleOptions(image_shape=(8, 8), augment=True))
    first = dataset.display_example()
    assert first["scene"] == "a"
    assert torch.equal(first["context"]["image"], dataset.display_example()["context"]["image"])
    # Test mode: span from frame 0 with the largest gap (8) -> context covers frames 0..8.
    assert min(first["context"]["index"].tolist()) == 0 and max(first["context"]["index"].tolist()) == 8
    more = dataset.display_example("b", num_context=6)
    assert more["scene"] == "b" and len(more["context"]["index"]) == 6


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_training_step_reaches_worker_processes(tmp_path, start_method):
    # "spawn" also proves the dataset pickles into a worker. A forward walk makes the context span equal the sampled gap: 3 during warm-up, 6..8 after.
    reader = open_dataset(write_dataset(tmp_path, {"a": 20, "b": 20}), "train")
    step = SharedStep(0)
    dataset = MultiSceneDataset(reader, small_sampler(), ExampleOptions(image_shape=(8, 8)), step=step)
    loader = DataLoader(
        dataset, batch_size=None, num_workers=1, persistent_workers=True, multiprocessing_context=start_method
    )

    def spans() -> list[int]:
        return [int(ex["context"]["index"].max() - ex["context"]["index"].min()) for ex in loader]

    assert spans() == [3, 3]
    step.value = 1000
    assert all(6 <= span <= 8 for span in spans())
