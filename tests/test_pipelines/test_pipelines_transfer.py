"""Batches through reused worker slots (pipelines.transfer): same data as the ordinary way, batches
the caller keeps are never overwritten, slots are reused only once released, and every fallback
(busy slots, concurrent iterations, pickled copies, pin_memory) still gives the right data."""

from __future__ import annotations

import copy
import pickle
from collections import namedtuple

import pytest
import torch

from pipelines import build_shards
from pipelines.loader import make_loader
from pipelines.transfer import MIN_BYTES, MainSlots, SlotControl, SlotRef, WorkerSlots

Pair = namedtuple("Pair", "images labels")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """36 shapes samples of 3x64x64 (a batch of 8 is 96 KiB: above MIN_BYTES) in shards of 10."""
    out = tmp_path_factory.mktemp("shards") / "shapes"
    build_shards("shapes", out, split="val", options={"size": 36, "resolution": 64}, max_count=10)
    return out


def _as_float(batch):
    return Pair(batch["image"].float() / 255, batch["label"])


def _epochs(loader, epochs=(0, 1)):
    out = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        out.append(list(loader))  # keep every batch: later batches must not overwrite them
    return out


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("batch_transform", [None, _as_float])
def test_slots_give_the_ordinary_batches_and_never_overwrite_kept_ones(shards, persistent, batch_transform):
    options = dict(batch_size=8, num_workers=2, seed=1, shuffle_buffer=8, decode="RGB", batch_transform=batch_transform)
    reference = _epochs(make_loader(shards, **options, reuse_memory=False))
    loader = make_loader(shards, **options, reuse_memory=True, persistent_workers=persistent, prefetch_factor=1)
    got = _epochs(loader)
    assert _same(got, reference)
    assert len(reference[0]) == 5 and reference[0] != [] and not _same(reference[0], reference[1])
    if persistent:  # the warm workers' slots stay mapped; at most max_slots (1 + 2) per worker
        assert 0 < len(loader._slots.mapped) <= 2 * 3


def _through_queue(value):
    """Pickle as a DataLoader's queue does (shared tensors travel as file descriptors)."""
    import torch.multiprocessing  # noqa: F401  (registers the tensor reductions)
    from multiprocessing.reduction import ForkingPickler

    return pickle.loads(ForkingPickler.dumps(value))


def test_worker_slots_reuse_only_released_memory():
    control = SlotControl(1)
    worker, main = WorkerSlots(control, max_slots=2), MainSlots(control)
    worker.start(0)
    big = [torch.full((MIN_BYTES,), i, dtype=torch.uint8) for i in range(4)]
    packed = [worker.pack({"x": b, "y": torch.tensor([i])}) for i, b in enumerate(big[:3])]
    assert isinstance(packed[0]["x"], SlotRef) and packed[0]["x"].storage is not None
    assert isinstance(packed[1]["x"], SlotRef) and packed[1]["x"].slot != packed[0]["x"].slot
    assert packed[2]["x"] is big[2]  # both slots hold unreleased batches: the ordinary way
    first = main.unpack(_through_queue(packed[0]))
    assert torch.equal(first["x"], big[0]) and torch.equal(first["y"], torch.tensor([0]))
    assert control.released_count(0) == 1
    again = worker.pack({"x": big[3]})  # slot 0 is free again and already mapped: no storage sent
    assert again["x"].slot == packed[0]["x"].slot and again["x"].storage is None
    main.unpack(_through_queue(packed[1]))
    assert torch.equal(main.unpack(_through_queue(again))["x"], big[3])
    assert torch.equal(first["x"], big[0])  # the copy the caller kept is untouched


def test_packing_keeps_structure_and_sends_small_or_odd_tensors_plainly():
    control = SlotControl(1)
    worker, main = WorkerSlots(control, max_slots=4), MainSlots(control)
    worker.start(0)
    batch = {"pair": Pair(torch.rand(64, 64, 8), [torch.arange(3), "text"]), "bf16": torch.ones(4, dtype=torch.bfloat16),
             "grad": torch.zeros(MIN_BYTES, requires_grad=True), "n": 3}
    packed = worker.pack(batch)
    assert isinstance(packed["pair"].images, SlotRef) and packed["grad"] is batch["grad"]
    out = main.unpack(packed)
    assert isinstance(out["pair"], Pair) and out["pair"].labels[1] == "text" and out["n"] == 3
    assert torch.equal(out["pair"].images, batch["pair"].images) and torch.equal(out["pair"].labels[0], torch.arange(3))
    assert out["bf16"].dtype == torch.bfloat16 and torch.equal(out["bf16"], batch["bf16"])
    nhwc = torch.rand(4, 3, 40, 40).contiguous(memory_format=torch.channels_last)
    crop = torch.rand(4, 3, 64, 80)[..., 8:72]  # not dense: arrives contiguous
    out = main.unpack(worker.pack({"nhwc": nhwc, "crop": crop}))
    assert out["nhwc"].is_contiguous(memory_format=torch.channels_last) and torch.equal(out["nhwc"], nhwc)
    assert out["crop"].is_contiguous() and torch.equal(out["crop"], crop)


def test_a_copy_made_outside_worker_start_is_disabled(shards):
    loader = make_loader(shards, batch_size=8, num_workers=2, decode="RGB", seed=4)
    clone = copy.deepcopy(loader)
    assert clone.dataset.transfer.enabled is False and clone.dataset.transfer.lock is None
    assert loader.dataset.transfer.enabled is True
    assert _same(list(clone), list(loader))  # the copy sends its batches the ordinary way


def test_concurrent_iterations_and_pin_memory_take_the_ordinary_way(shards):
    options = dict(batch_size=8, num_workers=2, seed=2, decode="RGB")
    expected = list(make_loader(shards, **options, reuse_memory=False))
    loader = make_loader(shards, **options)
    first = iter(loader)
    head = next(first)
    second = list(loader)  # runs while `first` is still open
    assert _same(second, expected) and _same(head, expected[0])
    assert _same([head, *first], expected)
    assert make_loader(shards, **options, pin_memory=True).dataset.transfer is None


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_slots_work_with_spawned_workers(shards, context):
    """macOS and Windows start workers with spawn: the slot control is pickled into them."""
    options = dict(batch_size=8, num_workers=2, seed=3, decode="RGB", multiprocessing_context=context)
    reference = list(make_loader(shards, **options, reuse_memory=False))
    loader = make_loader(shards, **options, persistent_workers=True)
    assert _same(list(loader), reference) and _same(list(loader), reference)
    assert 0 < len(loader._slots.mapped) <= 2 * 4


def test_a_batch_built_in_a_claimed_slot_is_sent_without_a_copy():
    control = SlotControl(1)
    worker, main = WorkerSlots(control, max_slots=3), MainSlots(control)
    worker.start(0)
    images = [torch.full((3, 64, 64), i, dtype=torch.uint8) for i in range(8)]
    assert worker.claim((2, 3), torch.uint8) is None  # too small to be worth a slot
    out = worker.claim((8, 3, 64, 64), torch.uint8)
    torch.stack(images, out=out)
    packed = worker.pack({"image": out, "head": out[:6], "flipped": out.flip(-1)})
    assert packed["image"].slot == packed["head"].slot == 0  # sent from where it was built
    assert packed["flipped"].slot == 1  # a new tensor: copied into another slot
    batch = main.unpack(_through_queue(packed))
    assert torch.equal(batch["image"], torch.stack(images)) and torch.equal(batch["head"], torch.stack(images[:6]))
    assert torch.equal(batch["flipped"], torch.stack(images).flip(-1))
    assert worker.claim((8, 3, 64, 64), torch.uint8).data_ptr() == out.data_ptr()  # released: reused


class _KeepsPrevious:
    """A batch_transform with a memory: it mixes each batch with the previous one it was given."""

    def __init__(self):
        self.previous = None

    def __call__(self, batch):
        image = batch["image"]
        batch["mixed"] = image if self.previous is None or self.previous.shape != image.shape else self.previous
        self.previous = image  # a reference, not a copy
        return batch


def test_a_batch_transform_keeping_old_batches_sees_them_unchanged(shards):
    """Batches handed to a batch_transform must not live in reused slots: it may keep them."""
    options = dict(batch_size=8, num_workers=1, seed=5, decode="RGB", shuffle=False)
    expected = list(make_loader(shards, **options, reuse_memory=False, batch_transform=_KeepsPrevious()))
    got = list(make_loader(shards, **options, batch_transform=_KeepsPrevious(), prefetch_factor=1))
    assert _same(got, expected)
    assert all(torch.equal(got[i]["mixed"], got[i - 1]["image"]) for i in range(1, len(got) - 1))
