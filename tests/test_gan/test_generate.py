"""Generation into shards: counts, filtering, provenance, determinism, resume, Ray, and the
downstream loader and segment trainer; the fit-interpreter workflow and its regeneration check."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from datafactory.gan.annotate import import_annotations, oracle_annotate, sample_for_annotation
from datafactory.gan.factory import fit_interpreter_from_annotations, regenerate_features
from datafactory.gan.generate import GenerateConfig, GeneratedSamples, generate_shards, label_batch, read_scores
from datafactory.gan.generator import checkpoint_sha256
from datafactory.gan.interpreter import InterpreterConfig, load_interpreter
from loaders import decode
from pipelines import make_loader, verify_shards
from pipelines.tario import iter_shard_samples

pytestmark = pytest.mark.usefixtures("one_thread")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.name.endswith((".tar", ".stats.json"))}


def _samples(shards: Path) -> list[dict]:
    out = []
    for tar in sorted(shards.glob("*.tar")):
        out.extend(iter_shard_samples(tar))
    return out


@pytest.fixture
def tiny_setup(tmp_path, tiny_generator, annotator):
    """The tiny hooked generator, 4 annotated images and a small interpreter fitted on them."""
    manifest = sample_for_annotation(tiny_generator, 4, 500, tmp_path / "annotation")
    masks = oracle_annotate(tmp_path / "annotation", annotator=annotator)
    annotations = import_annotations(masks, manifest, 3)
    fit_interpreter_from_annotations(tiny_generator, annotations,
                                     InterpreterConfig(num_classes=3, ensemble_size=3, max_epochs=2, pixels_per_epoch=256),
                                     tmp_path / "interpreter.pt", device="cpu")
    return {"annotations": annotations, "interpreter": tmp_path / "interpreter.pt"}


def test_counts_filtering_and_provenance(tmp_path, tiny_generator, tiny_setup):
    config = GenerateConfig(count=20, seed=0, drop_fraction=0.25, batch_size=4, max_count=8, device="cpu")
    result = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "gen", config,
                             generator_sha256="ab" * 32)
    assert (result.candidates, result.dropped, result.written) == (20, 5, 15)
    assert result.record["counts"] == {"candidates": 20, "dropped": 5, "kept": 15, "written": 15}
    assert json.loads((tmp_path / "gen" / "generate.json").read_text())["counts"]["written"] == 15
    scores = dict(read_scores(tmp_path / "gen" / "scores"))
    assert sorted(scores) == list(range(20))
    samples = _samples(result.shards)
    metas = [decode("json", s["json"]) for s in samples]
    kept = [m["seed"] for m in metas]
    assert kept == sorted(kept) and len(kept) == 15  # candidate order
    dropped = set(range(20)) - set(kept)
    assert max(scores[s] for s in kept) == result.threshold <= min(scores[s] for s in dropped)
    interpreter_sha = checkpoint_sha256(tiny_setup["interpreter"])
    for sample, meta in zip(samples, metas):
        assert sample["__key__"] == f"seed_{meta['seed']}" and sorted(s for s in sample if s != "__key__") == \
            ["json", "mask.png", "png"]
        assert meta["score"] == scores[meta["seed"]]  # the score the filter ranked
        assert meta["generator_sha256"] == "ab" * 32 and meta["interpreter_sha256"] == interpreter_sha
        assert meta["interpreter"] == "interpreter.pt"
        assert torch.equal(torch.tensor(meta["latent"]), tiny_generator.sample(1, meta["seed"]).latents[0])
    # the stored image and mask are the generator's image and the ensemble's majority vote
    interpreter = load_interpreter(tiny_setup["interpreter"])
    first = label_batch(tiny_generator, interpreter, [metas[0]["seed"]])
    image, mask = decode("png", samples[0]["png"]), decode("mask.png", samples[0]["mask.png"])
    assert (image.int() - first["images"][0].int()).abs().max() <= 1
    assert (mask != first["labels"][0]).float().mean() <= 0.01
    assert samples[0]["mask.png"][:8] == b"\x89PNG\r\n\x1a\n" and mask.max() < 3
    assert verify_shards(result.shards).ok


def test_without_filtering_there_is_no_scoring_pass(tmp_path, tiny_generator, tiny_setup):
    result = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "gen",
                             GenerateConfig(count=6, seed=3, batch_size=4, device="cpu"))
    assert (result.candidates, result.dropped, result.written, result.threshold) == (6, 0, 6, None)
    assert not (tmp_path / "gen" / "scores").exists()
    metas = [decode("json", s["json"]) for s in _samples(result.shards)]
    assert [m["seed"] for m in metas] == list(range(3, 9))
    assert metas[0]["generator_sha256"] is None  # an in-memory generator without a given hash


def test_deterministic_across_reruns_and_workers(tmp_path, tiny_generator, tiny_setup):
    config = GenerateConfig(count=12, seed=7, drop_fraction=0.5, batch_size=4, max_count=3, device="cpu")
    one = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "one", config)
    two = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "two",
                          GenerateConfig(**{**config.__dict__, "workers": 2}))
    assert _tree(one.shards) == _tree(two.shards) and len(_tree(one.shards)) == 4  # 6 kept, 3 per shard
    assert _tree(tmp_path / "one" / "scores") == _tree(tmp_path / "two" / "scores")
    again = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "one", config)
    assert again.resumed_shards == 2 and _tree(again.shards) == _tree(one.shards)


def test_resume_after_an_interrupted_build(tmp_path, tiny_generator, tiny_setup):
    config = GenerateConfig(count=10, seed=0, drop_fraction=0.2, batch_size=4, max_count=2, device="cpu")
    whole = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "whole", config)
    published = []

    def stop_after_the_first_output_shard(kind, info):
        if kind == "shard":
            published.append(info)
            if len(published) == 6:  # the 5 shards of the scoring pass, then one of the output
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "cut", config,
                        on_event=stop_after_the_first_output_shard)
    assert len(list((tmp_path / "cut" / "shards").glob("*.tar"))) == 1
    resumed = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "cut", config)
    assert resumed.resumed_shards == 1
    assert _tree(resumed.shards) == _tree(whole.shards)
    assert (resumed.written, resumed.dropped) == (whole.written, whole.dropped) == (8, 2)


def test_rerun_with_other_settings_is_refused(tmp_path, tiny_generator, tiny_setup):
    generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "gen", GenerateConfig(count=4, device="cpu"))
    with pytest.raises(ValueError, match="other checkpoints or settings.*overwrite"):
        generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "gen", GenerateConfig(count=5, device="cpu"))
    redone = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "gen",
                             GenerateConfig(count=5, device="cpu"), overwrite=True)
    assert redone.written == 5


def test_config_validation():
    with pytest.raises(ValueError, match="drop_fraction"):
        GenerateConfig(count=4, drop_fraction=1.0)
    with pytest.raises(ValueError, match="count"):
        GenerateConfig(count=0)
    with pytest.raises(ValueError, match="engine"):
        GenerateConfig(count=4, engine="spark")


def test_shards_load_and_train_the_segment_trainer(tmp_path, tiny_generator, tiny_setup):
    result = generate_shards(tiny_generator, tiny_setup["interpreter"], tmp_path / "gen",
                             GenerateConfig(count=8, batch_size=4, device="cpu"))
    batch = next(iter(make_loader(result.shards, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == (4, 16, 16) and batch["mask"].dtype == torch.int64
    from pipelines.train.config import load_config
    from pipelines.train.loop import fit
    from pipelines.train.registry import get_task

    task = get_task("segment")
    cfg = load_config(task.config_class, overrides=[
        f"shards={result.shards}", f"out={tmp_path / 'run'}", "max_steps=2", "batch_size=4", "num_classes=3",
        "base_channels=4", "depth=2", "progress=false", "device=cpu"])
    trained = fit(task, cfg)
    assert trained.steps == 2


def test_fit_regenerates_features_and_refuses_another_generator(tiny_setup, make_tiny):
    annotations = tiny_setup["annotations"]
    features = regenerate_features(make_tiny(), annotations)
    assert len(features) == 4 and [tuple(f.shape) for f in features[0]] == [(1, 12, 8, 8), (1, 8, 16, 16)]
    with pytest.raises(ValueError, match=r"seed_500\.png.*differs from the annotated one.*wrong generator"):
        regenerate_features(make_tiny(seed=1), annotations)
    from dataclasses import replace

    masks = annotations.masks.clone()
    masks[2, 0, :5] = 255
    partly = replace(annotations, masks=masks)
    with pytest.raises(ValueError, match=r"seed_502\.png holds 5 unlabeled pixels \(255\).*ignore_index=None"):
        fit_interpreter_from_annotations(make_tiny(), partly, InterpreterConfig(num_classes=3, max_epochs=1))
    fitted = fit_interpreter_from_annotations(make_tiny(), partly, InterpreterConfig(
        num_classes=3, ensemble_size=2, max_epochs=1, ignore_index=255), device="cpu")  # those pixels left out
    assert fitted.cfg.ignore_index == 255


def test_adapter_pickles_without_loaded_models(bundled):
    adapter = GeneratedSamples(bundled["generator"], bundled["interpreter"], [4, 9, 2], batch_size=2, device="cpu")
    first = adapter.load(0, decode=False)
    assert adapter._models is not None
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone._models is None and clone._cache is None
    assert clone.load(0, decode=False) == first  # reloaded from the checkpoint paths
    assert [clone.key(i) for i in range(3)] == ["seed_4", "seed_9", "seed_2"]


def test_ray_pickling_ships_paths_not_models(bundled):
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    adapter = GeneratedSamples(bundled["generator"], bundled["interpreter"], [4, 9], batch_size=2, device="cpu")
    first = adapter.load(1, decode=False)
    payload = cloudpickle.dumps(adapter)  # what ray.put sends to every task
    assert len(payload) < 4096 and b"generator.pt" in payload
    assert cloudpickle.loads(payload).load(1, decode=False) == first


@pytest.mark.slow  # starting Ray and a worker that imports torch: ~20-30 s on 2 cores
def test_ray_engine_gives_the_same_shards(tmp_path, bundled):
    ray = pytest.importorskip("ray")
    config = GenerateConfig(count=8, seed=0, drop_fraction=0.25, batch_size=4, max_count=3, device="cpu")
    local = generate_shards(bundled["generator"], bundled["interpreter"], tmp_path / "local", config)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = generate_shards(bundled["generator"], bundled["interpreter"], tmp_path / "ray",
                                 GenerateConfig(**{**config.__dict__, "engine": "ray"}))
    finally:
        ray.shutdown()
    assert _tree(remote.shards) == _tree(local.shards) and remote.written == 6
    meta = decode("json", _samples(remote.shards)[0]["json"])
    assert meta["generator_sha256"] == checkpoint_sha256(bundled["generator"])
    assert meta["generator"] == "generator.pt"


def test_run_factory_stops_for_masks_then_resumes_each_stage(tmp_path, annotator, monkeypatch):
    from datafactory.gan import factory
    from datafactory.gan.gan_train import GanTrainConfig
    from datafactory.gan.stylegan import StyleGAN2Config

    gan = GanTrainConfig(model=StyleGAN2Config(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16),
                         steps=2, batch_size=4, log_every=0, checkpoint_every=0, sample_grid=0)
    settings = dict(gan=gan, annotate_count=3, num_classes=3, dataset_options={"size": 8}, device="cpu", progress=False,
                    interpreter=InterpreterConfig(num_classes=3, ensemble_size=2, max_epochs=1, ignore_index=255),
                    generate=GenerateConfig(count=6, drop_fraction=0.5, batch_size=4, max_count=4))
    with pytest.raises(FileNotFoundError, match="no masks yet.*run again"):
        factory.run_factory("shapes", tmp_path, **settings)
    assert len(list((tmp_path / "annotation" / "images").glob("*.png"))) == 3
    oracle_annotate(tmp_path / "annotation", annotator=annotator)  # "the person" draws the masks
    result = factory.run_factory("shapes", tmp_path, **settings)
    assert result.verified and (result.generate.candidates, result.generate.dropped, result.generate.written) == (6, 3, 3)
    assert json.loads((tmp_path / "factory.json").read_text())["interpreter"]["config"]["ensemble_size"] == 2
    fitted = []
    monkeypatch.setattr(factory, "fit_interpreter_from_annotations", lambda *a, **k: fitted.append(a))
    again = factory.run_factory("shapes", tmp_path, **settings)
    assert fitted == [] and again.generate.resumed_shards == 1  # nothing refitted, the finished build kept
    assert _tree(again.shards) == _tree(result.shards)
