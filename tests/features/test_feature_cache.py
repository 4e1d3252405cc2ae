"""The on-disk feature cache: cached features, losses, gradients and probe metrics equal the uncached
path bit for bit; entries follow the audio and the featurizer; workers, ranks and broken disks are safe."""

from __future__ import annotations

import logging
import multiprocessing
import os
from functools import partial

import numpy as np
import pytest
import soundfile as sf
import torch
from fakes import run_threaded_ranks, write_csv

from humanclap.backbones.aggregation import ChunkedClapFeaturizer
from humanclap.data.audio import FileAudioStore
from humanclap.data.readers.manifest import read_manifest
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.features import ClipFeatures, cache_usage, clip_identity, disk, feature_batches
from humanclap.features.disk import CacheSettingError, configured_root, entry_path
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss
from humanclap.probes.base import run_probes
from humanclap.probes.cache import AudioRef
from humanclap.probes.relevance.probe import RelevanceProbe
from humanclap.probes.retrieval.probe import RetrievalProbe

SR = 16_000


def noise_wav(path, seconds: float, seed: int, sample_rate: int = SR):
    rng = np.random.default_rng(seed)
    sf.write(
        path,
        (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32),
        sample_rate,
    )
    return str(path)


@pytest.fixture
def manifest(tmp_path):
    """12 clips (0.5-1.7 s, so the tiny model's 1 s window sees short and long ones), 2 texts each."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = []
    for i in range(12):
        noise_wav(audio / f"c{i}.wav", 0.5 + 0.1 * i, seed=i)
        rows += [
            [f"audio/c{i}.wav", f"text {i} a", (i % 5) * 2],
            [f"audio/c{i}.wav", f"other {i}", 9 - i % 7],
        ]
    path = write_csv(tmp_path / "ratings.csv", ["audio", "text", "score"], rows)
    return read_manifest(path)


def _batches(loader) -> list[dict]:
    return list(loader)


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert torch.equal(a["index"], b["index"])
        assert a["audio"].keys() == b["audio"].keys()
        for name in a["audio"]:
            assert a["audio"][name].dtype == b["audio"][name].dtype
            assert torch.equal(a["audio"][name], b["audio"][name]), name
        assert torch.equal(a["text"]["input_ids"], b["text"]["input_ids"])


def _datamodule(pairs, backbone, cache_root, batch_size=4, **kwargs):
    return RatedPairDataModule(
        pairs, backbone.featurizer, batch_size=batch_size, feature_cache=cache_root, **kwargs
    )


def _loss_and_grads(backbone, batch, train: bool):
    """The Human-CLAP loss of ``batch`` and the gradients it gives (dropout seeded alike)."""
    torch.manual_seed(0)
    module = HumanClapModule(
        backbone,
        HumanClapLoss({"wsce": 0.1, "mse": 1.0, "mae": 1.0}),
        partial(torch.optim.AdamW, lr=1e-3),
    )
    backbone.zero_grad()
    backbone.train(train)
    loss = module._terms(batch)["loss"]
    loss.backward()
    grads = [p.grad.clone() for p in backbone.parameters() if p.grad is not None]
    backbone.eval()
    backbone.zero_grad()
    return loss.detach(), grads


def test_training_batches_losses_and_gradients_equal_the_uncached_path(
    tmp_path, manifest, tiny_fused_backbone
):
    backbone = (
        tiny_fused_backbone  # fused: 4-channel features, is_longer set for the 1.1-1.7 s clips
    )
    plain = _batches(_datamodule(manifest, backbone, None).val_dataloader())
    cached = _datamodule(manifest, backbone, tmp_path / "cache")
    cold = _batches(cached.val_dataloader())
    warm = _batches(cached.val_dataloader())
    _assert_same_batches(plain, cold)
    _assert_same_batches(plain, warm)
    assert any(bool(b["audio"]["is_longer"].any()) for b in warm) and any(
        not bool(b["audio"]["is_longer"].all()) for b in warm
    )
    # the old path: featurizer.audio over the waveforms of the batch
    reference = backbone.featurizer.audio(
        [manifest.load_audio(p.audio, backbone.sample_rate) for p in cached.val_pairs][:4]
    )
    assert torch.equal(reference["input_features"], warm[0]["audio"]["input_features"])
    assert torch.equal(reference["is_longer"], warm[0]["audio"]["is_longer"])

    loss_plain, grads_plain = _loss_and_grads(backbone, plain[0], train=True)
    loss_warm, grads_warm = _loss_and_grads(backbone, warm[0], train=True)
    assert torch.equal(loss_plain, loss_warm)
    assert len(grads_plain) == len(grads_warm) > 0
    assert all(torch.equal(a, b) for a, b in zip(grads_plain, grads_warm))


def test_chunked_features_of_the_transformer_head_are_cached_exactly(
    tmp_path, manifest, tiny_backbone
):
    chunked = ChunkedClapFeaturizer.from_featurizer(
        tiny_backbone.featurizer, chunk_seconds=0.5, max_chunks=3
    )
    features = ClipFeatures(chunked, tmp_path / "cache")
    store, keys = manifest.audio_store, [p.audio for p in manifest][::2]
    cold = chunked.collate([features(store, k) for k in keys])
    warm = chunked.collate([features(store, k) for k in keys])
    direct = chunked.audio([store.load(k, chunked.sample_rate) for k in keys])
    assert features.hits == len(keys) and features.misses == len(keys)
    for batch in (cold, warm):
        assert batch.keys() == direct.keys()
        for name in direct:
            assert torch.equal(batch[name], direct[name]), name
    # chunking is part of the featurizer's identity
    other = ChunkedClapFeaturizer.from_featurizer(
        tiny_backbone.featurizer, chunk_seconds=0.5, max_chunks=2
    )
    assert ClipFeatures(other, tmp_path / "cache").directory != features.directory


def _probe_metrics(pairs, backbone, **kwargs):
    probes = {"relevance": RelevanceProbe(pairs), "retrieval": RetrievalProbe(pairs)}
    results, cache = run_probes(probes, backbone, batch_size=5, **kwargs)
    return {f"{n}/{k}": v for n, r in results.items() for k, v in r.metrics.items()}, cache


def test_probe_metrics_cold_warm_and_with_workers_equal_the_uncached_path(
    tmp_path, manifest, tiny_backbone
):
    plain, _ = _probe_metrics(manifest, tiny_backbone)
    cold, cold_cache = _probe_metrics(
        manifest, tiny_backbone, feature_cache=tmp_path / "c", num_workers=2
    )
    warm, warm_cache = _probe_metrics(
        manifest, tiny_backbone, feature_cache=tmp_path / "c", num_workers=2
    )
    assert plain == cold == warm
    # the cold pass featurised in worker processes; the warm pass read every clip in this one
    assert cold_cache.clips.misses == 0 and cache_usage(cold_cache.clips.directory)[0] == 12
    assert warm_cache.clips.hits == 12 and warm_cache.clips.misses == 0
    # and the rows are those of the waveform path (embed_audio) bit for bit
    refs = [AudioRef(manifest.audio_store, k) for k in dict.fromkeys(p.audio for p in manifest)]
    waves = [r.store.load(r.key, tiny_backbone.sample_rate) for r in refs]
    assert torch.equal(warm_cache.audio(refs), tiny_backbone.embed_audio(waves, batch_size=5))


def test_synthetic_clips_are_cached_by_content(tmp_path, tiny_backbone):
    pairs = synthetic_pairs(n_sounds=6, texts_per_sound=1, val_fraction=0.5, seed=1)
    plain, _ = _probe_metrics(pairs, tiny_backbone)
    cold, _ = _probe_metrics(pairs, tiny_backbone, feature_cache=tmp_path / "c")
    warm, cache = _probe_metrics(pairs, tiny_backbone, feature_cache=tmp_path / "c")
    assert plain == cold == warm and cache.clips.hits == 6
    other = synthetic_pairs(n_sounds=6, texts_per_sound=1, val_fraction=0.5, seed=2)  # other sounds
    assert clip_identity(other.audio_store, "synthetic/00000") != clip_identity(
        pairs.audio_store, "synthetic/00000"
    )


def test_a_rewritten_file_is_featurised_again(tmp_path, tiny_backbone):
    path = noise_wav(tmp_path / "a.wav", 1.0, seed=1)
    store = FileAudioStore()
    features = ClipFeatures(tiny_backbone.featurizer, tmp_path / "cache")
    first = features(store, path)["input_features"]
    assert np.array_equal(features(store, path)["input_features"], first) and features.hits == 1
    noise_wav(tmp_path / "a.wav", 1.0, seed=2)  # new samples, same name and length
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = features(store, path)["input_features"]
    assert features.misses == 2 and not np.array_equal(first, second)
    assert np.array_equal(
        second,
        tiny_backbone.featurizer.clip(store.load(path, tiny_backbone.sample_rate))[
            "input_features"
        ],
    )


def test_featurizer_settings_select_their_own_entries(tmp_path, tiny_backbone, tiny_fused_backbone):
    plain = ClipFeatures(tiny_backbone.featurizer, tmp_path)
    fused = ClipFeatures(tiny_fused_backbone.featurizer, tmp_path)
    assert plain.directory != fused.directory
    assert (plain.directory / "featurizer.json").exists()
    extractor = type(tiny_backbone.featurizer.feature_extractor)(
        **{**tiny_backbone.featurizer.feature_extractor.to_dict(), "frequency_max": 7000}
    )
    changed = type(tiny_backbone.featurizer)(extractor, tiny_backbone.featurizer.tokenizer, False)
    assert ClipFeatures(changed, tmp_path).directory not in (plain.directory, fused.directory)
    assert ClipFeatures(tiny_backbone.featurizer, tmp_path).directory == plain.directory


def test_a_corrupt_entry_is_recomputed_with_a_warning(tmp_path, tiny_backbone, caplog):
    path = noise_wav(tmp_path / "a.wav", 1.0, seed=1)
    features = ClipFeatures(tiny_backbone.featurizer, tmp_path / "cache")
    good = features(FileAudioStore(), path)
    entry = entry_path(features.directory, clip_identity(FileAudioStore(), path))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        again = features(FileAudioStore(), path)
    assert np.array_equal(again["input_features"], good["input_features"])
    assert "unreadable entry" in caplog.text and features.misses == 2


def test_an_unwritable_cache_warns_once_and_results_stay_right(
    tmp_path, manifest, tiny_backbone, caplog, monkeypatch
):
    features = ClipFeatures(tiny_backbone.featurizer, tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("humanclap.features.clips.write_entry", refuse)
    store, keys = manifest.audio_store, list(dict.fromkeys(p.audio for p in manifest))
    with caplog.at_level(logging.WARNING):
        got = [features(store, k) for k in keys]
    assert caplog.text.count("cannot write") == 1 and "cache=false" in caplog.text
    for key, clip in zip(keys, got):
        direct = tiny_backbone.featurizer.clip(store.load(key, tiny_backbone.sample_rate))
        assert np.array_equal(clip["input_features"], direct["input_features"])


def test_a_failed_write_leaves_neither_entry_nor_scratch_file(tmp_path, tiny_backbone, monkeypatch):
    path = noise_wav(tmp_path / "a.wav", 1.0, seed=1)
    features = ClipFeatures(tiny_backbone.featurizer, tmp_path / "cache")
    real_encode = disk._encode

    def fail_midway(arrays):
        header, blobs = real_encode(arrays)

        def chunks():
            yield blobs[0]
            raise OSError(5, "I/O error")  # in the middle of the entry

        return header, chunks()

    monkeypatch.setattr(disk, "_encode", fail_midway)
    features(FileAudioStore(), path)
    assert cache_usage(features.directory) == (0, 0)
    assert [p.name for p in features.directory.rglob("*") if p.is_file()] == ["featurizer.json"]


def _fill(root, paths, seed):
    from humanclap.backbones import tiny_clap

    features = ClipFeatures(tiny_clap().featurizer, root)
    order = list(paths)
    np.random.default_rng(seed).shuffle(order)
    for path in order:
        features(FileAudioStore(), path)
    return features.misses


@pytest.mark.slow
def test_processes_filling_one_cache_at_once_leave_only_complete_entries(tmp_path, tiny_backbone):
    paths = [noise_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(16)]
    root = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        pool.starmap(_fill, [(root, paths, seed) for seed in range(3)])
    features = ClipFeatures(tiny_backbone.featurizer, root)
    assert cache_usage(features.directory)[0] == 16
    for path in paths:
        cached = features(FileAudioStore(), path)
        direct = tiny_backbone.featurizer.clip(
            FileAudioStore().load(path, tiny_backbone.sample_rate)
        )
        assert np.array_equal(cached["input_features"], direct["input_features"])
        assert cached["is_longer"] == direct["is_longer"]
    assert features.misses == 0
    assert not [p for p in root.rglob(".*") if p.is_file()]  # no scratch files left


def test_errors_in_workers_reach_the_caller_as_themselves(tmp_path, tiny_backbone):
    good = noise_wav(tmp_path / "a.wav", 1.0, seed=1)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"not audio")
    features = ClipFeatures(tiny_backbone.featurizer, None)
    with pytest.raises(Exception, match="b.wav: cannot read audio") as raised:
        list(
            feature_batches(
                [(FileAudioStore(), good), (FileAudioStore(), str(bad))], features, 1, num_workers=2
            )
        )
    assert "Traceback" not in str(raised.value)


def test_cache_false_writes_nothing_and_bad_values_are_named(tmp_path, manifest, tiny_backbone):
    assert configured_root(False, str(tmp_path / "x")) is None
    assert configured_root(True, str(tmp_path / "x")) == tmp_path / "x"
    with pytest.raises(CacheSettingError, match=r"cache='maybe'.*cache=true.*cache=false"):
        configured_root("maybe")
    data = _datamodule(manifest, tiny_backbone, None)
    list(data.val_dataloader())
    assert (
        data.features.directory is None
        and data.features.usage() == "feature cache: off (cache=false)"
    )
    assert not (tmp_path / "x").exists()


def test_default_location_follows_humanclap_cache(monkeypatch, tmp_path):
    from humanclap.features import cache_root

    monkeypatch.setenv("HUMANCLAP_CACHE", str(tmp_path / "hc"))
    assert cache_root() == tmp_path / "hc" / "features"
    monkeypatch.delenv("HUMANCLAP_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "humanclap" / "features"
    assert cache_root("~/feat") == tmp_path / "home" / "feat"


def test_usage_reports_clips_and_size(tmp_path, manifest, tiny_backbone):
    features = ClipFeatures(tiny_backbone.featurizer, tmp_path / "cache")
    keys = list(dict.fromkeys(p.audio for p in manifest))
    for key in keys:
        features(manifest.audio_store, key)
    entries, size = cache_usage(features.directory)
    assert entries == 12
    assert size == sum(p.stat().st_size for p in features.directory.rglob("*.feat"))
    assert (
        features.usage().startswith("feature cache: 12 clips, ")
        and str(features.directory) in features.usage()
    )


def test_ranks_featurise_disjoint_shares_of_the_clips(
    tmp_path, monkeypatch, manifest, tiny_backbone
):
    """Two ranks (threads with a real all-gather) on a cold cache: each clip is featurised by exactly
    one rank, and both get the same metrics as one process."""
    single, _ = _probe_metrics(manifest, tiny_backbone)
    results, _ = run_threaded_ranks(
        monkeypatch,
        2,
        lambda rank: _probe_metrics(manifest, tiny_backbone, feature_cache=tmp_path / "c"),
    )
    assert [results[r][1].clips.misses for r in range(2)] == [6, 6]
    assert results[0][0] == results[1][0]
    # float32 rows depend on how clips are batched (~1e-7; tests/probes/test_ddp_probe.py uses float64)
    assert results[0][0] == pytest.approx(single, abs=1e-5, nan_ok=True)


def test_worker_batches_of_cached_fused_clips_train_exactly_as_the_uncached_batches(
    tmp_path, tiny_fused_backbone
):
    """A loader worker hands over one of the four equal crops of cached short fused clips (a quarter
    of the shared memory); the model's input step restores them: same loss and gradients bit for bit."""
    backbone = tiny_fused_backbone
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = [
        [noise_wav(audio / f"s{i}.wav", 0.3 + 0.1 * i, seed=i), f"text {i}", i] for i in range(6)
    ]
    rows += [[noise_wav(audio / "long.wav", 1.5, seed=9), "a long one", 5]]  # 4 different crops
    pairs = read_manifest(write_csv(tmp_path / "r.csv", ["audio", "text", "score"], rows))
    plain = _batches(_datamodule(pairs, backbone, None, 2, val_fraction=0.6).val_dataloader())
    data = _datamodule(pairs, backbone, tmp_path / "cache", 2, val_fraction=0.6, num_workers=1)
    list(data.val_dataloader())  # fills the cache
    warm = [data.on_before_batch_transfer(batch, 0) for batch in data.val_dataloader()]
    compact = [b for b in warm if "input_features_channels" in b["audio"]]
    assert compact and compact[0]["audio"]["input_features"].shape[1] == 1
    assert any("input_features_channels" not in b["audio"] for b in warm)  # the long clip's batch

    for reference, batch in zip(plain, warm):
        assert torch.equal(reference["index"], batch["index"])
        assert torch.equal(
            backbone.embed_audio_features(reference["audio"]),
            backbone.embed_audio_features(batch["audio"]),
        )
        # eval mode: a lone long clip in a batch cannot pass the fusion's BatchNorm in train mode
        loss_plain, grads_plain = _loss_and_grads(backbone, reference, train=False)
        loss_warm, grads_warm = _loss_and_grads(backbone, batch, train=False)
        assert torch.equal(loss_plain, loss_warm)
        assert all(torch.equal(a, b) for a, b in zip(grads_plain, grads_warm))


def test_a_cache_dir_that_cannot_be_used_is_named_with_the_way_out(tmp_path, tiny_backbone):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheSettingError, match=r"cannot use .*a-file.*cache_dir=.*cache=false"):
        ClipFeatures(tiny_backbone.featurizer, blocker)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_probe_pass_leaves_torchs_global_random_state_alone(
    tmp_path, manifest, tiny_backbone, num_workers
):
    """Probe passes run between training epochs: drawing from the global RNG (a DataLoader without its
    own generator seeds its workers from it) would change every later dropout mask of the run."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _probe_metrics(manifest, tiny_backbone, feature_cache=tmp_path / "c", num_workers=num_workers)
    _probe_metrics(manifest, tiny_backbone, feature_cache=tmp_path / "c", num_workers=num_workers)
    assert torch.equal(torch.get_rng_state(), state)
