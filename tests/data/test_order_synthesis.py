"""Before/after pair synthesis: sample-exact crossfade layout, captions, negatives, determinism,
splits, mixing with other data, and the data configs that build them."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from humanclap.data.pairs import DataError, RatedPair, RatedPairs
from humanclap.data.synthetic.events import synthetic_events
from humanclap.data.synthetic.order import (
    SKIP_CONNECTIVE,
    SKIP_EMPTY,
    SKIP_LOW_SCORE,
    SKIP_REPEAT,
    SKIP_SENTENCES,
    SKIP_SPLIT,
    ConcatAudioStore,
    OrderAudioStore,
    OrderRecipe,
    caption_problem,
    compose,
    concat_pairs,
    crossfade,
    fade_samples,
    order_caption,
    order_pairs_from_events,
    synthesize_order_pairs,
    with_order_pairs,
)
from humanclap.data.synthetic.sounds import synthetic_pairs

SR = 48_000
AUDIOCAPS = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "audiocaps"
    / "audiocaps_v1_temporal_connective_captions_first400.tsv"
)  # MIT


class ArrayStore:
    """Key -> a fixed array (at any rate: lengths scale with the rate, values do not)."""

    def __init__(self, clips: dict[str, np.ndarray], base_rate: int = SR):
        self.clips = clips
        self.base_rate = base_rate
        self.rates: list[int] = []

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        self.rates.append(sample_rate)
        clip = self.clips[key]
        n = int(round(clip.size * sample_rate / self.base_rate))
        index = np.minimum(np.arange(n) * self.base_rate // sample_rate, clip.size - 1)
        index[-1] = clip.size - 1  # first and last samples survive a rate change
        return clip[index].astype(np.float32)


def _captioned(
    captions: dict[str, tuple[str, str | None, str | None]],
    lengths: dict[str, int] | None = None,
    name: str = "clips",
) -> RatedPairs:
    """Clips 'a', 'b', ... with constant values 1, 2, ... and the given (caption, split, group)."""
    lengths = lengths or {}
    clips = {
        key: np.full(lengths.get(key, 2 * SR), float(i + 1), dtype=np.float32)
        for i, key in enumerate(captions)
    }
    pairs = [
        RatedPair(audio=key, text=text, score=1.0, split=split, group=group)
        for key, (text, split, group) in captions.items()
    ]
    return RatedPairs(pairs, ArrayStore(clips), name=name)


# -- crossfade layout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "len_a, len_b, crossfade_s, expected",
    [
        (2 * SR, 2 * SR, 1.0, SR),  # normal: exactly 1 s
        (10 * SR, 3 * SR, 1.0, SR),
        (2 * SR, 2 * SR, 0.25, SR // 4),
        (int(0.6 * SR), 2 * SR, 1.0, int(0.3 * SR)),  # A shorter than the crossfade: half of A
        (2 * SR, int(0.4 * SR), 1.0, int(0.2 * SR)),  # B shorter: half of B
        (
            int(1.5 * SR),
            2 * SR,
            1.0,
            int(0.75 * SR),
        ),  # shorter than twice the crossfade: half of it too
        (SR + 1, 3 * SR, 1.0, SR // 2),  # odd length: floor
        (1, 5, 1.0, 0),  # a one-sample clip: plain concatenation
        (2 * SR, 2 * SR, 0.0, 0),  # no crossfade
    ],
)
def test_fade_samples(len_a, len_b, crossfade_s, expected):
    assert fade_samples(crossfade_s, len_a, len_b, SR) == expected


def _impulse_clip(n: int, value: float) -> np.ndarray:
    clip = np.full(n, value, dtype=np.float32)
    clip[0] = 10 * value  # first-sample marker
    clip[-1] = -10 * value  # last-sample marker
    return clip


@pytest.mark.parametrize(
    "len_a, len_b, n_fade", [(2 * SR, 2 * SR, SR), (300, 1000, 150), (1000, 300, 0), (7, 9, 3)]
)
def test_crossfade_is_sample_exact(len_a, len_b, n_fade):
    a, b = _impulse_clip(len_a, 1.0), _impulse_clip(len_b, 2.0)
    out = crossfade(a, b, n_fade)
    assert out.shape == (len_a + len_b - n_fade,) and out.dtype == np.float32
    head = len_a - n_fade
    assert out[0] == 10.0  # A's first sample at 0
    assert np.all(out[1:head] == 1.0) if n_fade else np.all(out[1 : head - 1] == 1.0)
    assert out[-1] == -20.0  # B's last sample at len_a + len_b - n_fade - 1
    assert np.all(out[len_a + (n_fade == 0) : -1] == 2.0)  # B alone after the overlap
    if n_fade == 0:
        assert out[len_a - 1] == -10.0 and out[len_a] == 20.0  # plain concatenation
        return
    gain = (np.arange(n_fade) + 1) / (n_fade + 1)
    expected = a[head:] * (1 - gain) + b[:n_fade] * gain
    np.testing.assert_allclose(out[head:len_a], expected, rtol=1e-6)
    # Strictly mixed: every overlap sample lies between the two clips' values (markers aside).
    inner = out[head + 1 : len_a - 1]
    assert np.all((inner > 1.0) & (inner < 2.0))
    assert np.all(np.diff(inner) > 0)  # linear ramp from A to B


def test_equal_power_crossfade_and_bad_arguments():
    a, b = np.ones(100, np.float32), np.ones(100, np.float32)
    out = crossfade(a, b, 50, "equal_power")
    gain = (np.arange(50) + 1) / 51
    np.testing.assert_allclose(
        out[50:100], np.sin(gain * np.pi / 2) + np.cos(gain * np.pi / 2), rtol=1e-6
    )
    with pytest.raises(ValueError, match="fade shape"):
        crossfade(a, b, 10, "cubic")
    with pytest.raises(ValueError, match="n_fade"):
        crossfade(a, b, 101)


def test_order_store_renders_a_then_b_at_any_rate():
    clips = {"x": _impulse_clip(2 * SR, 1.0), "y": _impulse_clip(int(0.5 * SR), 2.0)}
    source = ArrayStore(clips)
    store = OrderAudioStore(source, {"order/000000": OrderRecipe("x", "y", 1.0)})
    layout = store.layout("order/000000")
    assert (layout.len_first, layout.len_second, layout.n_fade) == (2 * SR, SR // 2, SR // 4)
    assert layout.second_start == 2 * SR - SR // 4 and layout.length == 2 * SR + SR // 4
    wave = store.load("order/000000", SR)
    assert wave.size == layout.length and wave[0] == 10.0 and wave[-1] == -20.0
    low = store.load("order/000000", 16_000)  # the source store is asked at the requested rate
    assert source.rates[-1] == 16_000 and low.size == 32_000 + 8_000 - 4_000
    assert low[0] == 10.0 and low[-1] == -20.0
    with pytest.raises(KeyError, match="no clip"):
        store.load("order/000001", SR)


# -- captions --------------------------------------------------------------------------------------


def test_caption_composition():
    assert (
        compose("a dog barks.", "before", "A car passes by!")
        == "A dog barks before a car passes by"
    )
    assert (
        compose("  a  dog   barks ...", "then", "The TV plays") == "A dog barks then the TV plays"
    )
    assert (
        compose("wind blows", "followed by", "TV static hisses.")
        == "Wind blows followed by TV static hisses"
    )
    assert compose("wind blows", "then", "I speak") == "Wind blows then I speak"
    assert compose("wind blows", "then", "I'm speaking") == "Wind blows then I'm speaking"
    assert compose("wind blows", "then", "McDonald laughs") == "Wind blows then McDonald laughs"
    assert compose("wind blows", "then", "ATV engine revs") == "Wind blows then ATV engine revs"
    assert (
        compose("wind blows", "then", "Rachel laughs") == "Wind blows then rachel laughs"
    )  # a known limit
    assert (
        compose("emergency vehicle siren,", "before", "Idle engine")
        == "Emergency vehicle siren before idle engine"
    )


@pytest.mark.parametrize(
    "connective, expected",
    [
        ("before", "A dog barks before a car honks"),
        ("then", "A dog barks then a car honks"),
        ("followed by", "A dog barks followed by a car honks"),
        ("after", "A car honks after a dog barks"),  # "B after A": the audio is still A then B
    ],
)
def test_each_connective_states_a_then_b(connective, expected):
    assert order_caption("A dog barks.", "A car honks.", connective) == expected


def test_caption_problems():
    assert caption_problem("A dog barks") is None
    assert caption_problem("A dog barks in the afternoon") is None  # whole words only
    assert caption_problem("Thenardier talks") is None
    assert caption_problem("A man speaks as a dog barks") is None  # simultaneity is fine
    for text in [
        "A dog barks then a man speaks",
        "A man speaks AFTER a beep",
        "Honking followed  by a siren",
        "Before a car passes, a dog barks",
    ]:
        assert caption_problem(text) == SKIP_CONNECTIVE, text
    assert caption_problem("A dog barks. A man speaks.") == SKIP_SENTENCES
    assert caption_problem(" ... ") == SKIP_EMPTY


# -- synthesis -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events():
    return synthetic_events(n_clips=40, seed=0)


def test_pairs_negatives_groups_and_audio(events):
    order = synthesize_order_pairs(events, n_pairs=40, seed=0)
    assert order.name == "order_synthetic" and len(order) == 80
    assert order.group_sets == {"order": ["before", "after", "then", "followed_by"]}
    store = order.audio_store
    text_of = {(p.audio, p.text): p for p in events}
    caption_of = {p.audio: p.text for p in events}
    for positive, negative in zip(order.pairs[0::2], order.pairs[1::2]):
        assert positive.audio == negative.audio and positive.score == 1.0 and negative.score == 0.0
        assert positive.group == negative.group and positive.split == negative.split
        recipe = store.recipes[positive.audio]
        a, b = caption_of[recipe.first], caption_of[recipe.second]
        connective = positive.group.replace("_", " ")
        assert positive.text == order_caption(a, b, connective)
        assert negative.text == order_caption(b, a, connective)  # clauses swapped
        assert positive.text != negative.text
        assert (
            text_of[(recipe.first, a)].group != text_of[(recipe.second, b)].group
        )  # different event classes
    # Balanced connectives (each split round-robin).
    assert Counter(p.group for p in order.pairs[0::2]) == {
        "before": 10,
        "after": 10,
        "then": 10,
        "followed_by": 10,
    }
    # Audio of one order clip: A's samples at the start, B's at the end.
    pair = order[0]
    recipe = store.recipes[pair.audio]
    wave = order.load_audio(pair.audio, SR)
    a, b = events.load_audio(recipe.first, SR), events.load_audio(recipe.second, SR)
    assert wave.size == 2 * SR + 2 * SR - SR
    np.testing.assert_array_equal(wave[:SR], a[:SR])
    np.testing.assert_array_equal(wave[2 * SR :], b[SR:])


def test_no_negatives_and_connective_subset(events):
    order = synthesize_order_pairs(
        events, n_pairs=9, negatives=False, connectives=["after"], seed=1
    )
    assert len(order) == 9 and all(p.score == 1.0 and p.group == "after" for p in order)
    assert all(" after " in p.text for p in order)


def test_determinism_unique_ids_and_seeds(events):
    first = synthesize_order_pairs(events, n_pairs=30, seed=5)
    again = synthesize_order_pairs(events, n_pairs=30, seed=5)
    other = synthesize_order_pairs(events, n_pairs=30, seed=6)
    assert first.pairs == again.pairs and first.audio_store.recipes == again.audio_store.recipes
    assert first.pairs != other.pairs
    keys = list(dict.fromkeys(p.audio for p in first))
    assert keys == [f"order/{i:06d}" for i in range(30)]  # ids, never captions
    assert first.audio_store.fingerprint(keys) == again.audio_store.fingerprint(keys)
    assert first.audio_store.fingerprint(keys) != other.audio_store.fingerprint(keys)
    # No order clip repeats a (A, B, caption) combination.
    combos = [(first.audio_store.recipes[p.audio], p.text) for p in first.pairs[0::2]]
    assert len(set(combos)) == len(combos)


def test_splits_never_mix_clips(events):
    order = synthesize_order_pairs(events, n_pairs=60, seed=2)
    split_of = {p.audio: p.split for p in events}
    for pair in order:
        recipe = order.audio_store.recipes[pair.audio]
        assert split_of[recipe.first] == split_of[recipe.second] == pair.split
    clips = Counter(split_of.values())  # 24 / 8 / 8 clips
    assert Counter(p.split for p in order.pairs[0::2]) == {
        s: 60 * n // 40 for s, n in clips.items()
    }
    assert order.splits() == ["test", "train", "validation"]


def test_short_clips_and_zero_crossfade():
    source = _captioned(
        {"a": ("a beep", "train", None), "b": ("a thud", "train", None)},
        lengths={"a": int(0.5 * SR), "b": 3 * SR},
    )
    order = synthesize_order_pairs(source, n_pairs=2, crossfade_s=1.0, seed=0)
    for key in dict.fromkeys(p.audio for p in order):
        layout = order.audio_store.layout(key)
        assert layout.n_fade == int(0.25 * SR)  # half the 0.5 s clip
        assert order.load_audio(key, SR).size == int(0.5 * SR) + 3 * SR - int(0.25 * SR)
    plain = synthesize_order_pairs(source, n_pairs=2, crossfade_s=0.0, seed=0)
    for key in dict.fromkeys(p.audio for p in plain):
        recipe = plain.audio_store.recipes[key]
        wave = plain.load_audio(key, SR)
        first = source.load_audio(recipe.first, SR)
        assert plain.audio_store.layout(key).n_fade == 0 and wave.size == int(3.5 * SR)
        assert np.all(wave[: first.size] == first[0]) and np.all(wave[first.size :] != first[0])


def test_skipped_captions_are_counted():
    source = _captioned(
        {
            "a": ("A dog barks.", "train", None),
            "b": ("A car honks then stops", "train", None),
            "c": ("Birds chirp. Wind blows.", "train", None),
            "d": ("!!!", "train", None),
            "e": ("A bell rings", "train", None),
        }
    )
    low = RatedPair(audio="e", text="a cat", score=0.4, split="train")
    repeat = RatedPair(audio="a", text="A dog barks.", score=1.0, split="train")
    source = RatedPairs(source.pairs + [low, repeat], source.audio_store, name="mixed")
    order = synthesize_order_pairs(source, n_pairs=2, seed=0)
    assert dict(order.skipped.counts) == {
        SKIP_CONNECTIVE: 1,
        SKIP_SENTENCES: 1,
        SKIP_EMPTY: 1,
        SKIP_LOW_SCORE: 1,
        SKIP_REPEAT: 1,
    }
    assert len(order) == 4
    for pair in order:
        recipe = order.audio_store.recipes[pair.audio]
        assert {recipe.first, recipe.second} == {"a", "e"}


def test_audiocaps_captions_with_order_connectives_are_all_skipped():
    """On the AudioCaps subset with connectives (text only): every caption with before/after/then/
    followed by is skipped, captions with only as/while/during are used."""
    with AUDIOCAPS.open(encoding="utf-8") as handle:
        rows = [row for _, row in zip(range(400), csv.DictReader(handle, delimiter="\t"))]
    order_words = {"before", "after", "then", "followed by"}
    pairs = [
        RatedPair(
            audio=f"ac/{row['audiocap_id']}", text=row["caption"], score=1.0, split=row["split"]
        )
        for row in rows
    ]
    store = ArrayStore({p.audio: np.ones(SR, np.float32) for p in pairs})
    order = synthesize_order_pairs(RatedPairs(pairs, store, name="audiocaps"), n_pairs=50, seed=0)
    has_order = [
        bool(order_words & set(row["connectives"].split("|"))) for row in rows
    ]  # e.g. "then|as"
    assert order.skipped.counts[SKIP_CONNECTIVE] == sum(has_order) > 0
    assert 0 < sum(has_order) < len(rows)
    used = {k for r in order.audio_store.recipes.values() for k in (r.first, r.second)}
    usable = {f"ac/{row['audiocap_id']}" for row, skip in zip(rows, has_order) if not skip}
    assert used <= usable
    for pair in order:
        assert sum(f" {w} " in f" {pair.text.lower()} " for w in order_words) == 1, pair.text


def test_split_too_small_is_counted_and_group_rule():
    source = _captioned(
        {
            "a": ("a beep", "train", "beep"),
            "b": ("a thud", "train", "thud"),
            "c": ("a hum", "validation", "hum"),
            "d": ("an electronic beep", "train", "beep"),
        }
    )
    order = synthesize_order_pairs(source, n_pairs=10, seed=0)
    assert order.splits() == ["train"] and order.skipped.counts[SKIP_SPLIT] == 1
    for pair in order:
        recipe = order.audio_store.recipes[pair.audio]
        assert {recipe.first, recipe.second} in ({"a", "b"}, {"b", "d"})  # never beep with beep
    same_group = _captioned(
        {"a": ("a beep", "train", "beep"), "d": ("an electronic beep", "train", "beep")}
    )
    with pytest.raises(DataError, match="different groups"):
        synthesize_order_pairs(same_group, n_pairs=1)
    assert len(synthesize_order_pairs(same_group, n_pairs=1, distinct_groups=False)) == 2


def test_too_many_pairs_for_the_clips_is_an_error():
    source = _captioned({"a": ("a beep", "train", None), "b": ("a thud", "train", None)})
    # 2 clips x 2 orders x 4 connectives = 8 distinct order captions.
    assert len(synthesize_order_pairs(source, n_pairs=8, seed=0)) == 16
    with pytest.raises(DataError, match="distinct order pairs"):
        synthesize_order_pairs(source, n_pairs=9, seed=0)


def test_unsplit_clips_give_unsplit_pairs():
    source = _captioned(
        {"a": ("a beep", None, None), "b": ("a thud", None, None), "c": ("a hum", None, None)}
    )
    order = synthesize_order_pairs(source, n_pairs=4, seed=0)
    assert all(p.split is None for p in order)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_pairs=0), "n_pairs"),
        (dict(n_pairs=2.5), "n_pairs"),
        (dict(crossfade_s=-0.1), "crossfade_s"),
        (dict(crossfade_s=float("nan")), "crossfade_s"),
        (dict(connectives=["before", "while"]), "unknown"),
        (dict(connectives=[]), "connectives"),
        (dict(connectives=["then", "then"]), "connectives"),
        (dict(sample_rate=0), "sample_rate"),
        (dict(fade_shape="cubic"), "fade shape"),
    ],
)
def test_bad_arguments(kwargs, match):
    source = _captioned({"a": ("a beep", "train", None), "b": ("a thud", "train", None)})
    with pytest.raises(ValueError, match=match):
        synthesize_order_pairs(source, **{"n_pairs": 2, **kwargs})


def test_needs_two_usable_clips():
    with pytest.raises(DataError, match="at least 2"):
        synthesize_order_pairs(_captioned({"a": ("a beep", "train", None)}), n_pairs=1)
    with pytest.raises(DataError, match="at least 2"):
        synthesize_order_pairs(
            _captioned({"a": ("a beep", "train", None), "b": ("then a bell", "train", None)}),
            n_pairs=1,
        )


# -- mixing ----------------------------------------------------------------------------------------


def test_concat_pairs_routes_and_namespaces(events):
    base = synthetic_pairs(n_sounds=10, texts_per_sound=2, test_fraction=0.2, seed=0)
    order = synthesize_order_pairs(events, n_pairs=8, seed=0)
    mixed = concat_pairs(base, order)
    assert mixed.name == "synthetic+order_synthetic" and len(mixed) == len(base) + len(order)
    assert isinstance(mixed.audio_store, ConcatAudioStore)
    assert [p.audio for p in mixed[: len(base)]] == [f"0:{p.audio}" for p in base]
    assert [p.audio for p in mixed[len(base) :]] == [f"1:{p.audio}" for p in order]
    for original, namespaced in zip([*base, *order], mixed):
        assert (
            original.text,
            original.score,
            original.split,
            original.group,
            original.num_ratings,
        ) == (
            namespaced.text,
            namespaced.score,
            namespaced.split,
            namespaced.group,
            namespaced.num_ratings,
        )
    np.testing.assert_array_equal(
        mixed.load_audio(f"0:{base[0].audio}", SR), base.load_audio(base[0].audio, SR)
    )
    np.testing.assert_array_equal(
        mixed.load_audio(f"1:{order[0].audio}", 16_000), order.load_audio(order[0].audio, 16_000)
    )
    for bad in [base[0].audio, "2:order/000000", "x:order/000000"]:
        with pytest.raises(KeyError, match="no clip"):
            mixed.load_audio(bad, SR)
    assert mixed.group_sets == {"order": ["before", "after", "then", "followed_by"]}
    assert set(mixed.splits()) == {"train", "validation", "test"}
    # Selecting a split keeps the routing store.
    validation = mixed.select("validation")
    assert validation.load_audio(validation[-1].audio, SR).ndim == 1
    # Same part twice: no key collisions; fingerprints delegate to the parts.
    twice = concat_pairs(order, order, name="twice")
    assert twice.name == "twice" and len({p.audio for p in twice}) == 2 * len(
        {p.audio for p in order}
    )
    keys = list(dict.fromkeys(p.audio for p in mixed))
    assert mixed.audio_store.fingerprint(keys) == concat_pairs(base, order).audio_store.fingerprint(
        keys
    )
    assert mixed.audio_store.fingerprint(keys) != concat_pairs(base, order).audio_store.fingerprint(
        keys[:-1]
    )


def test_concat_merges_group_sets_and_skips():
    one = RatedPairs(
        [RatedPair("k", "t", 1.0, group="x")],
        ArrayStore({"k": np.ones(4)}),
        name="one",
        group_sets={"s": ["x"]},
    )
    one.skipped.add("bad row", "line 3")
    two = RatedPairs(
        [RatedPair("k", "t", 0.5, group="y")],
        ArrayStore({"k": np.ones(4)}),
        name="two",
        group_sets={"s": ["y", "x"], "u": ["y"]},
    )
    mixed = concat_pairs(one, two)
    assert mixed.group_sets == {"s": ["x", "y"], "u": ["y"]}
    assert (
        dict(mixed.skipped.counts) == {"one: bad row": 1}
        and mixed.skipped.examples["one: bad row"] == "line 3"
    )
    with pytest.raises(ValueError):
        concat_pairs()
    with pytest.raises(TypeError):
        concat_pairs(one, [RatedPair("k", "t", 1.0)])


def test_convenience_builders():
    order = order_pairs_from_events(n_events=20, n_pairs=12, seed=3)
    assert order.name == "order_synthetic" and len(order) == 24
    assert set(order.splits()) == {"train", "validation", "test"}
    base = synthetic_pairs(n_sounds=10, texts_per_sound=1, seed=0)
    mixed = with_order_pairs(base, n_pairs=12, n_events=20, seed=3)
    assert len(mixed) == 10 + 24 and [p.text for p in mixed[10:]] == [p.text for p in order]
    source = synthetic_events(n_clips=12, seed=9)
    from_source = with_order_pairs(base, n_pairs=4, source=source, negatives=False, name="mine")
    assert from_source.name == "mine" and len(from_source) == 14
    assert from_source.audio_store.stores[1].source is source.audio_store


# -- data configs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["order_synthetic", "synthetic_with_order"])
def test_data_configs_compose_and_build(compose_train, tiny_backbone, config):
    cfg = compose_train(f"data={config}")
    datamodule = instantiate(cfg.data, _partial_=True)(featurizer=tiny_backbone.featurizer)
    pairs = datamodule.pairs
    assert set(pairs.splits()) == {"train", "validation", "test"}
    assert len(datamodule.train_pairs) > len(datamodule.val_pairs) > 0
    order = [p for p in pairs if p.group in {"before", "after", "then", "followed_by"}]
    assert len(order) == 2 * cfg.data.pairs.n_pairs
    assert {p.score for p in order} == {0.0, 1.0}
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["audio"]["input_features"].shape[0] == cfg.data.batch_size
    if config == "synthetic_with_order":
        base = instantiate(cfg.data.pairs.base)
        assert [p.text for p in pairs[: len(base)]] == [p.text for p in base]
        assert len(pairs) == len(base) + len(order)
