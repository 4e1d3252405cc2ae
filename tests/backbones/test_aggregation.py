"""Transformer aggregation heads (event-ordering §2.1): shapes, masking, order sensitivity, training,
persistence and the Hydra config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from humanclap.backbones import ClapBackbone, ClapFeaturizer, from_pretrained, tiny_clap
from humanclap.backbones.aggregation import (
    HEADS_CONFIG,
    HEADS_MODEL_TYPE,
    HEADS_WEIGHTS,
    ChunkedClapFeaturizer,
    TransformerAggregator,
    TransformerHeadBackbone,
    masked_mean,
    with_transformer_heads,
)
from humanclap.backbones.checkpoint_safety import CheckpointError
from humanclap.backbones.pretrained import from_pretrained_with_heads
from humanclap.backbones.resolve import resolve_model
from humanclap.losses import HumanClapLoss

SR = 48_000
DIM = 32  # the tiny model's projection_dim
TEXTS = [
    "a bright sound",
    "dark",
    "a dog barks then a bell rings",
    "a low hum followed by a whistle",
]
SMALL_DATA = ["data.pairs.n_sounds=16", "data.pairs.texts_per_sound=2", "data.batch_size=4"]


def noise(seconds: float, seed: int, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(round(seconds * SR)))).astype(
        np.float32
    )


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def head_backbone(**kwargs) -> TransformerHeadBackbone:
    """A fresh tiny model with heads (never the session fixture: the heads share its ClapModel)."""
    return with_transformer_heads(tiny_clap(), **kwargs)


@pytest.fixture(scope="module")
def heads() -> TransformerHeadBackbone:
    return head_backbone().eval()


# -- the aggregator on its own -----------------------------------------------------------------------


@pytest.mark.parametrize("cls_token", [True, False])
def test_aggregator_shape_and_padding_is_irrelevant(cls_token):
    torch.manual_seed(0)
    head = TransformerAggregator(
        input_dim=12, output_dim=6, max_positions=16, cls_token=cls_token
    ).eval()
    sequence = torch.randn(3, 5, 12)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = head(sequence, mask)
        assert out.shape == (3, 6)
        scrambled = sequence.clone()
        scrambled[~mask] = 100 * torch.randn(int((~mask).sum()), 12)
        torch.testing.assert_close(head(scrambled, mask), out, atol=1e-6, rtol=0)
        # ... and a padded row equals the same row without the padding.
        torch.testing.assert_close(head(sequence[1:2, :2]), out[1:2], atol=1e-6, rtol=0)
        # The test has teeth: without the mask the padded values do change the output.
        assert (head(scrambled) - out).abs().max() > 1e-3


def test_aggregator_refuses_bad_input():
    head = TransformerAggregator(input_dim=4, output_dim=4, max_positions=4, cls_token=False)
    with pytest.raises(ValueError, match="position 0"):
        head(torch.randn(1, 3, 4), torch.tensor([[False, True, True]]))  # left padding
    with pytest.raises(ValueError, match="max_positions"):
        head(torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match=r"\(B, T, 4\)"):
        head(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="divisible"):
        TransformerAggregator(input_dim=4, output_dim=5, num_heads=2)


def test_swapping_two_chunks_changes_the_transformer_but_not_mean_pooling():
    torch.manual_seed(1)
    head = TransformerAggregator(input_dim=8, output_dim=8, max_positions=8).eval()
    chunks = torch.randn(1, 4, 8)
    swapped = chunks[:, [1, 0, 2, 3]]
    with torch.no_grad():
        assert (head(chunks) - head(swapped)).abs().max() > 1e-3
    torch.testing.assert_close(masked_mean(chunks), masked_mean(swapped))


# -- chunking ------------------------------------------------------------------------------------------


def test_chunking_rules(heads):
    featurizer = heads.featurizer
    assert isinstance(featurizer, ChunkedClapFeaturizer) and featurizer.chunk_samples == SR
    count = lambda seconds: len(featurizer.split(noise(seconds, 0)))  # noqa: E731
    assert count(0.3) == 1 and count(1.0) == 1 and count(1.5) == 2 and count(3.0) == 3
    assert count(1.05) == 1  # a 50 ms tail is dropped (< min_last_chunk_seconds)
    assert count(12.0) == 10  # the first max_chunks seconds
    wave = noise(2.5, 3)
    assert np.array_equal(featurizer.split(wave)[1], wave[SR : 2 * SR])  # consecutive, in order

    features = featurizer.audio([noise(1.5, 1), noise(0.5, 2), noise(3.2, 3)])
    assert features["chunk_mask"].tolist() == [
        [True, True, False, False],
        [True, False, False, False],
        [True, True, True, True],
    ]
    assert features["input_features"].shape[0] == 3 * 4 and features["is_longer"].shape == (12, 1)
    assert not features["input_features"][
        ~features["chunk_mask"].flatten()
    ].any()  # padded rows are zeros
    # Each chunk gets exactly the features ClapFeaturizer gives that stretch of audio on its own.
    plain = ClapFeaturizer(
        featurizer.feature_extractor, featurizer.tokenizer, featurizer.enable_fusion
    ).audio
    torch.testing.assert_close(
        features["input_features"][1], plain([noise(1.5, 1)[SR:]])["input_features"][0]
    )
    torch.testing.assert_close(
        features["input_features"][4], plain([noise(0.5, 2)])["input_features"][0]
    )


# -- the backbone --------------------------------------------------------------------------------------


def test_embeddings_have_the_right_shape_and_unit_norm(heads):
    waves = [noise(1.5, 1), tone(0.7, 440.0), noise(2.2, 5)]
    audio = heads.embed_audio(waves, batch_size=2)
    text = heads.embed_text(TEXTS, batch_size=3)
    for matrix, n in ((audio, len(waves)), (text, len(TEXTS))):
        assert (
            matrix.shape == (n, DIM) and matrix.dtype == torch.float32 and not matrix.requires_grad
        )
        torch.testing.assert_close(matrix.norm(dim=-1), torch.ones(n))
    assert heads.embed_audio([]).shape == (0, DIM) and heads.embed_text([]).shape == (0, DIM)
    assert heads.sample_rate == SR and heads.logit_scale is heads.model.logit_scale_a
    # Different inputs give different rows; the heads are not the CLAP projections.
    assert (audio[0] - audio[1]).abs().max() > 1e-2 and (text[0] - text[1]).abs().max() > 1e-2
    plain = ClapBackbone(heads.model, tiny_clap().featurizer)
    assert (plain.embed_text(TEXTS) - text).abs().max() > 1e-2


def test_padded_chunks_do_not_matter(heads):
    long, short = noise(2.6, 1), noise(0.8, 2)
    features = heads.featurizer.audio([long, short])
    mask = features["chunk_mask"]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    padded = ~mask.flatten()
    scrambled = {key: value.clone() for key, value in features.items()}
    scrambled["input_features"][padded] = torch.randn_like(scrambled["input_features"][padded])
    scrambled["is_longer"][padded] = True
    with torch.no_grad():
        reference = heads.audio_embeddings(features)
        torch.testing.assert_close(heads.audio_embeddings(scrambled), reference, atol=1e-6, rtol=0)
    # So a clip's embedding does not depend on how long its batch-mates are.
    alone = heads.embed_audio([short])
    torch.testing.assert_close(alone[0], reference[1], atol=1e-5, rtol=0)


def test_padded_tokens_do_not_matter(heads):
    tokens = heads.featurizer.text(TEXTS)
    padding = tokens["attention_mask"] == 0
    assert padding[1].any()  # "dark" is padded to the longest text
    scrambled = dict(tokens)
    scrambled["input_ids"] = torch.where(
        padding, torch.randint(5, 100, tokens["input_ids"].shape), tokens["input_ids"]
    )
    with torch.no_grad():
        reference = heads.text_embeddings(tokens)
        torch.testing.assert_close(heads.text_embeddings(scrambled), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(heads.embed_text(TEXTS[1:2])[0], reference[1], atol=1e-5, rtol=0)


def test_swapping_two_audio_chunks_changes_the_head_but_not_mean_pooling(heads):
    first, second = noise(1.0, 7, level=0.3), tone(1.0, 1500.0)
    ab, ba = np.concatenate([first, second]), np.concatenate([second, first])
    with torch.no_grad():
        sequence_ab, mask_ab = heads.chunk_embeddings(heads.featurizer.audio([ab]))
        sequence_ba, mask_ba = heads.chunk_embeddings(heads.featurizer.audio([ba]))
        assert sequence_ab.shape == (1, 2, heads.model.config.audio_config.hidden_size)
        # Chunks are encoded independently: BA's chunk embeddings are AB's, swapped...
        torch.testing.assert_close(sequence_ba, sequence_ab[:, [1, 0]], atol=1e-6, rtol=0)
        assert (sequence_ab[0, 0] - sequence_ab[0, 1]).abs().max() > 1e-2  # ... and they differ.
        # The Transformer head tells the two orders apart (already untrained: the order effect is
        # ~1e-2 here, float noise is < 1e-6),
        head_ab = F.normalize(heads.audio_head(sequence_ab, mask_ab), dim=-1)
        head_ba = F.normalize(heads.audio_head(sequence_ba, mask_ba), dim=-1)
        assert (head_ab - head_ba).norm() > 1e-3
        torch.testing.assert_close(
            head_ab, heads.audio_embeddings(heads.featurizer.audio([ab])), atol=1e-6, rtol=0
        )
        # while temporal mean pooling (+ the CLAP projection, the layers the head replaces) cannot.
        pooled_ab = F.normalize(
            heads.model.audio_projection(masked_mean(sequence_ab, mask_ab)), dim=-1
        )
        pooled_ba = F.normalize(
            heads.model.audio_projection(masked_mean(sequence_ba, mask_ba)), dim=-1
        )
        torch.testing.assert_close(pooled_ab, pooled_ba, atol=1e-6, rtol=0)


def test_gradients_flow_into_the_heads_and_freezing():
    backbone = head_backbone().train()
    audio = backbone.audio_embeddings(backbone.featurizer.audio([noise(1.5, 1), noise(0.6, 2)]))
    text = backbone.text_embeddings(backbone.featurizer.text(TEXTS[:2]))
    HumanClapLoss({"wsce": 0.1, "mae": 1.0})(
        audio, text, torch.tensor([0.9, 0.2]), backbone.logit_scale
    )["loss"].backward()
    for head in (backbone.audio_head, backbone.text_head):
        for name, parameter in head.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in backbone.model.audio_model.parameters()
    )
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in backbone.model.text_model.parameters()
    )
    # The replaced layers never reach the output, so they are kept out of the optimiser.
    replaced = [
        backbone.model.audio_projection,
        backbone.model.text_projection,
        backbone.model.text_model.pooler,
    ]
    trainable = {id(p) for p in backbone.trainable_parameters()}
    for module in replaced:
        assert all(p.grad is None and id(p) not in trainable for p in module.parameters())

    backbone.freeze(audio=True)  # the encoder, not its new head
    assert not any(p.requires_grad for p in backbone.model.audio_model.parameters())
    assert all(p.requires_grad for p in backbone.audio_head.parameters())
    assert all(p.requires_grad for p in backbone.model.text_model.encoder.parameters())
    backbone.freeze()
    assert all(p.requires_grad for p in backbone.model.audio_model.parameters())
    assert not any(p.requires_grad for module in replaced for p in module.parameters())

    strict = head_backbone(freeze_heads_with_towers=True)
    strict.freeze(text=True)
    assert not any(p.requires_grad for p in strict.text_head.parameters())
    assert all(p.requires_grad for p in strict.audio_head.parameters())


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    backbone = head_backbone()
    waves = [
        np.concatenate([noise(1.0, i, level=0.05 * (i + 1)), tone(0.5, 200.0 * (i + 1))])
        for i in range(4)
    ]
    audio_features = backbone.featurizer.audio(waves)
    tokens = backbone.featurizer.text(TEXTS)
    scores = torch.tensor([0.9, 0.1, 0.6, 0.3])
    loss_fn = HumanClapLoss({"wsce": 0.1, "mse": 1.0, "mae": 1.0})

    def loss() -> torch.Tensor:
        return loss_fn(
            backbone.audio_embeddings(audio_features),
            backbone.text_embeddings(tokens),
            scores,
            backbone.logit_scale,
        )["loss"]

    backbone.eval()
    with torch.no_grad():
        before = loss().item()
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=1e-3)
    backbone.train()
    for _ in range(15):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
        backbone.clamp_logit_scale()
    backbone.eval()
    with torch.no_grad():
        after = loss().item()
    assert after < 0.8 * before, (before, after)


# -- persistence ---------------------------------------------------------------------------------------


def test_save_pretrained_round_trip(tmp_path):
    backbone = head_backbone(max_chunks=4, text_cls_token=True).eval()
    with torch.no_grad():  # weights no fresh initialisation would give
        backbone.audio_head.cls.add_(0.5)
        backbone.text_head.output_projection.weight.mul_(1.5)
    waves, texts = [noise(1.5, 1), tone(3.0, 300.0)], TEXTS
    audio, text = backbone.embed_audio(waves), backbone.embed_text(texts)

    out = backbone.save_pretrained(tmp_path / "export")
    assert (out / HEADS_WEIGHTS).is_file() and (out / HEADS_CONFIG).is_file()
    config = json.loads((out / HEADS_CONFIG).read_text())
    assert config["chunking"]["max_chunks"] == 4 and config["text_head"]["cls_token"] is True
    assert json.loads((out / "config.json").read_text())["model_type"] == HEADS_MODEL_TYPE

    for reloaded in (
        from_pretrained(str(out)),
        from_pretrained_with_heads(str(out)),
        resolve_model(str(out)).backbone,
    ):
        assert isinstance(reloaded, TransformerHeadBackbone)
        assert reloaded.featurizer.max_chunks == 4
        state = reloaded.state_dict()
        assert state.keys() == backbone.state_dict().keys()
        assert all(torch.equal(value, state[key]) for key, value in backbone.state_dict().items())
        assert torch.equal(reloaded.embed_audio(waves), audio)
        assert torch.equal(reloaded.embed_text(texts), text)

    plain = tiny_clap().save_pretrained(tmp_path / "plain")
    assert type(from_pretrained(str(plain))) is ClapBackbone  # directories without heads: unchanged
    with pytest.raises(FileNotFoundError, match=HEADS_CONFIG):
        from_pretrained_with_heads(str(plain))


def test_plain_transformers_does_not_load_a_heads_export_silently(tmp_path):
    """``ClapModel.from_pretrained`` would give the towers without the heads: it warns, naming the marker."""
    out = head_backbone().save_pretrained(tmp_path / "export")
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from transformers import ClapModel; ClapModel.from_pretrained({str(out)!r})",
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert (
        f"You are using a model of type `{HEADS_MODEL_TYPE}` to instantiate a model of type `clap`"
        in plain.stderr
    )
    with pytest.raises(
        ValueError, match=f"model type `{HEADS_MODEL_TYPE}` but Transformers does not recognize"
    ):
        AutoModel.from_pretrained(out)


def test_a_marked_export_without_its_heads_is_refused(tmp_path):
    out = head_backbone().save_pretrained(tmp_path / "export")
    (out / HEADS_CONFIG).unlink()
    with pytest.raises(
        CheckpointError,
        match=f"says model_type '{HEADS_MODEL_TYPE}': the model needs its "
        f"Transformer heads, but .* has no {HEADS_CONFIG}",
    ):
        from_pretrained(str(out))


# -- configuration -------------------------------------------------------------------------------------


def test_config_composes_and_trains_one_epoch(compose_train, compose_evaluate):
    from humanclap.evaluate import evaluate
    from humanclap.train import train

    cfg = compose_train(
        "model=tiny_transformer_head",
        "logger=csv",
        "trainer.max_epochs=1",
        "+data.pairs.duration_s=1.5",
        *SMALL_DATA,
    )
    assert cfg.model._target_ == "humanclap.backbones.aggregation.with_transformer_heads"
    assert cfg.model.backbone._target_ == "humanclap.backbones.tiny_clap"
    assert cfg.optimizer.lr == pytest.approx(1e-3) and cfg.trainer.max_epochs == 1
    summary = train(cfg)

    export = Path(summary["export_dir"])
    assert (export / HEADS_WEIGHTS).is_file()
    exported = resolve_model(str(export)).backbone  # as `humanclap.evaluate model=<dir>` loads it
    assert isinstance(exported, TransformerHeadBackbone)
    last = resolve_model(str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")).backbone
    assert isinstance(last, TransformerHeadBackbone)
    # One epoch = one checkpoint: the export holds the Lightning checkpoint's weights, heads included.
    state = last.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in exported.state_dict().items())
    fresh = head_backbone(audio_cls_token=False)  # the config's heads read the first chunk
    assert exported.audio_head.cls is None
    assert not torch.equal(  # it trained
        exported.audio_head.output_projection.weight, fresh.audio_head.output_projection.weight
    )
    assert exported.embed_audio([noise(2.0, 0)]).shape == (1, DIM)
    card = (export / "README.md").read_text()  # the model card says what it is and how to load it
    assert (
        f"| run | `{cfg.run_name}` |" in card and "| base model | `tiny_transformer_head` (" in card
    )
    assert (
        "| exported epoch | 0 (lowest val/loss) |" in card
        and "**plain transformers cannot use this model**" in card
    )
    assert (
        f'model = from_pretrained("{export}")' in card
        and f"python -m humanclap.evaluate model={export}" in card
    )

    # `python -m humanclap.evaluate model=<export>` measures the model with its heads.
    evaluation = compose_evaluate(
        f"models=[{export}]",
        "names=[heads]",
        "probes=[relevance]",
        "figures=false",
        "data.pairs.n_sounds=20",
        "data.pairs.texts_per_sound=2",
        "progress=false",
    )
    metrics = evaluate(evaluation)["heads"]["relevance"]
    document = json.loads((Path(evaluation.paths.output_dir) / "metrics.json").read_text())
    assert document["models"]["heads"]["kind"] == "transformers_dir" and "srcc" in metrics


def test_tiny_head_config_is_a_model_name_for_evaluate():
    resolved = resolve_model("tiny_transformer_head")
    assert resolved.kind == "config" and isinstance(resolved.backbone, TransformerHeadBackbone)
    # Same seed, same heads.
    assert torch.equal(
        resolved.backbone.audio_head.output_projection.weight,
        resolve_model("tiny_transformer_head").backbone.audio_head.output_projection.weight,
    )


def test_any_backbone_can_be_wrapped_from_config(compose_train):
    cfg = compose_train("model=laion_htsat_fused_transformer_head")
    assert cfg.model.backbone.source == "laion/clap-htsat-fused"
    assert (
        cfg.optimizer.lr == pytest.approx(1e-5) and cfg.trainer.max_epochs == 50
    )  # the paper schedule
    # The command-line form shown in model/tiny_transformer_head.yaml.
    cfg = compose_train(
        "model=tiny_transformer_head",
        "model.backbone._target_=humanclap.backbones.from_pretrained",
        "~model.backbone.seed",
        "~model.backbone.enable_fusion",
        "+model.backbone.source=laion/clap-htsat-fused",
    )
    assert dict(cfg.model.backbone) == {
        "_target_": "humanclap.backbones.from_pretrained",
        "source": "laion/clap-htsat-fused",
    }


def _order_sensitivity(heads: TransformerHeadBackbone, clips) -> float:
    """mean (1 − cos(AB, BA)) / mean (1 − cos between different clips), on the audio embeddings."""
    ab = heads.embed_audio([np.concatenate([a, b]) for a, b in clips])
    ba = heads.embed_audio([np.concatenate([b, a]) for a, b in clips])
    reversal = float((1 - (ab * ba).sum(-1)).mean())
    cosines = ab @ ab.T
    n = len(clips)
    between = float(1 - (cosines.sum() - cosines.diag().sum()) / (n * n - n))
    return reversal / between


def test_a_head_reading_the_first_chunk_starts_order_sensitive_where_a_cls_head_does_not():
    """Why recipe=ordering reads the first chunk (docs/models.md#transformer-aggregation-heads): at
    initialisation a learned [CLS] averages the chunks and barely tells A-then-B from B-then-A."""
    clips = [
        (noise(1.0, seed, level=0.05 + 0.05 * seed), tone(1.0, 300.0 * (seed + 1)))
        for seed in range(6)
    ]
    with_cls = head_backbone(dropout=0.0).eval()
    first_chunk = head_backbone(dropout=0.0, audio_cls_token=False).eval()
    assert with_cls.audio_head.cls is not None and first_chunk.audio_head.cls is None
    assert first_chunk.audio_head.config()["max_positions"] == 10  # max_chunks, no [CLS] slot
    with torch.no_grad():
        assert (
            _order_sensitivity(first_chunk, clips)
            > 0.3
            > 0.15
            > _order_sensitivity(with_cls, clips)
        )


def test_a_first_chunk_head_round_trips(tmp_path):
    backbone = head_backbone(audio_cls_token=False).eval()
    waves = [noise(1.5, 1), tone(2.0, 300.0)]
    audio = backbone.embed_audio(waves)
    out = backbone.save_pretrained(tmp_path / "export")
    assert json.loads((out / HEADS_CONFIG).read_text())["audio_head"]["cls_token"] is False
    reloaded = from_pretrained(str(out))
    assert reloaded.audio_head.cls is None and torch.equal(reloaded.embed_audio(waves), audio)
