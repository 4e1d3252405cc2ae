"""The noun/verb-only transform (event-ordering §3.1, NV): logic with an injected tagger, the error
that names what to install when no tagger is available, and the real taggers when present."""

from __future__ import annotations

import builtins
import importlib.util
import sys

import numpy as np
import pytest

from humanclap.data.pairs import DataError, RatedPair, RatedPairs
from humanclap.data.transforms import nv_text
from humanclap.data.transforms.nv_text import (
    INSTALL_NLTK,
    INSTALL_SPACY,
    SKIP_EMPTY,
    TaggerUnavailable,
    is_noun_or_verb,
    nouns_and_verbs,
    nv_transform,
    resolve_tagger,
    tokenize,
)

PAPER = "A vehicle is passing through a forest road as birds chirp in the background"
PAPER_NV = "Vehicle passing forest road birds chirp background"

# A lexicon tagger with Penn tags, enough for the sentences below.
PENN = {
    "a": "DT",
    "the": "DT",
    "vehicle": "NN",
    "is": "VBZ",
    "passing": "VBG",
    "through": "IN",
    "forest": "NN",
    "road": "NN",
    "as": "IN",
    "birds": "NNS",
    "chirp": "VBP",
    "in": "IN",
    "background": "NN",
    "dog": "NN",
    "barks": "VBZ",
    "loudly": "RB",
    "and": "CC",
    "very": "RB",
    "quietly": "RB",
    "john's": "NNP",
    "low-pitched": "JJ",
    "hum": "NN",
    "were": "VBD",
    "heard": "VBN",
    "tv": "NNP",
}
UNIVERSAL = {
    "a": "DET",
    "vehicle": "NOUN",
    "is": "AUX",
    "passing": "VERB",
    "dog": "NOUN",
    "barks": "VERB",
    "loudly": "ADV",
    "john": "PROPN",
}


def penn(tokens):
    return [(t, PENN.get(t.lower(), "JJ")) for t in tokens]


def universal(tokens):
    return [(t, UNIVERSAL.get(t.lower(), "ADJ")) for t in tokens]


@pytest.fixture(autouse=True)
def _fresh_backends():
    nv_text._spacy_tagger.cache_clear()
    nv_text._nltk_tagger.cache_clear()
    yield
    nv_text._spacy_tagger.cache_clear()
    nv_text._nltk_tagger.cache_clear()


def test_paper_example_with_penn_and_universal_tags():
    assert nouns_and_verbs(PAPER, tagger=penn) == PAPER_NV
    assert nouns_and_verbs(PAPER + ".", tagger=penn) == PAPER_NV + "."
    assert (
        nouns_and_verbs("a vehicle is passing", tagger=universal) == "vehicle passing"
    )  # AUX dropped
    assert nouns_and_verbs("A dog barks loudly!", tagger=universal) == "Dog barks!"


def test_rules():
    assert (
        is_noun_or_verb("dogs", "NNS")
        and is_noun_or_verb("John", "NNP")
        and is_noun_or_verb("ran", "VBD")
    )
    assert not is_noun_or_verb("is", "VBZ") and not is_noun_or_verb("Were", "VBD")  # forms of "be"
    assert (
        is_noun_or_verb("has", "VBZ")
        and is_noun_or_verb("x", "PROPN")
        and not is_noun_or_verb("is", "AUX")
    )
    assert not is_noun_or_verb("loudly", "RB") and not is_noun_or_verb("the", "DT")
    assert tokenize("A low-pitched hum, John's TV... and 3 dogs!") == [
        "A",
        "low-pitched",
        "hum",
        "John's",
        "TV",
        "and",
        "3",
        "dogs",
    ]
    assert nouns_and_verbs("A low-pitched hum, John's TV", tagger=penn) == "Hum John's TV"
    assert (
        nouns_and_verbs("a dog barks", tagger=penn) == "dog barks"
    )  # lower-case text stays lower-case
    assert nouns_and_verbs("Very quietly", tagger=penn) == ""
    assert nouns_and_verbs("", tagger=penn) == ""


def test_tagger_returning_the_wrong_number_of_tags_is_an_error():
    with pytest.raises(ValueError, match="2 tokens"):
        nouns_and_verbs("dog barks", tagger=lambda tokens: [("dog", "NN")])
    with pytest.raises(ValueError, match="tagger must be"):
        nouns_and_verbs("dog barks", tagger="stanza")


def _pairs() -> RatedPairs:
    class Store:
        def load(self, key, sample_rate):
            return np.zeros(4, np.float32)

    pairs = [
        RatedPair("c1", PAPER, 1.0, split="train", group="g"),
        RatedPair("c2", "Very quietly", 0.5, split="train"),
        RatedPair("c3", "A dog barks loudly", 0.25, split="validation", group="h", num_ratings=3),
        RatedPair("c1", PAPER, 0.75, split="validation"),
    ]
    return RatedPairs(pairs, Store(), name="caps", group_sets={"s": ["g", "h"]})


def test_nv_transform_replaces_texts_and_counts_emptied_pairs():
    calls = []

    def counting(tokens):
        calls.append(tuple(tokens))
        return penn(tokens)

    source = _pairs()
    nv = nv_transform(source, tagger=counting)
    assert (
        nv.name == "caps:nv"
        and nv.audio_store is source.audio_store
        and nv.group_sets == source.group_sets
    )
    assert [p.text for p in nv] == [PAPER_NV, "Dog barks", PAPER_NV]
    assert [(p.audio, p.score, p.split, p.group, p.num_ratings) for p in nv] == [
        ("c1", 1.0, "train", "g", 1),
        ("c3", 0.25, "validation", "h", 3),
        ("c1", 0.75, "validation", None, 1),
    ]
    assert (
        dict(nv.skipped.counts) == {SKIP_EMPTY: 1}
        and "Very quietly" in nv.skipped.examples[SKIP_EMPTY]
    )
    assert len(calls) == 3  # each unique text tagged once


def test_nv_transform_of_some_splits_only():
    nv = nv_transform(_pairs(), tagger=penn, splits=["train"], name="train-nv")
    assert nv.name == "train-nv"
    assert [p.text for p in nv] == [PAPER_NV, "A dog barks loudly", PAPER]  # validation untouched
    with pytest.raises(DataError, match="test"):
        nv_transform(_pairs(), tagger=penn, splits=["test"])
    with pytest.raises(DataError, match="no pair left"):
        nv_transform(_pairs(), tagger=lambda tokens: [(t, "DT") for t in tokens])


# -- when no tagger is available -------------------------------------------------------------------


@pytest.fixture
def no_taggers(monkeypatch):
    """Make `import spacy` and `import nltk` fail, as if neither were installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in {"spacy", "nltk"}:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for module in [m for m in sys.modules if m.split(".")[0] in {"spacy", "nltk"}]:
        monkeypatch.delitem(sys.modules, module)


def test_missing_packages_name_what_to_install(no_taggers):
    with pytest.raises(TaggerUnavailable) as error:
        nouns_and_verbs(PAPER)
    message = str(error.value)
    assert INSTALL_SPACY in message and INSTALL_NLTK in message
    assert (
        "pip install nltk" in message
        and "python -m nltk.downloader averaged_perceptron_tagger_eng punkt_tab" in message
    )
    assert "python -m spacy download en_core_web_sm" in message
    assert isinstance(error.value, ImportError)
    with pytest.raises(TaggerUnavailable, match="pip install spacy"):
        resolve_tagger("spacy")
    with pytest.raises(TaggerUnavailable, match="pip install nltk"):
        resolve_tagger("nltk")
    with pytest.raises(TaggerUnavailable):  # before any text is touched
        nv_transform(_pairs())
    assert nouns_and_verbs(PAPER, tagger=penn) == PAPER_NV  # an injected tagger needs neither


def test_installed_packages_without_their_models_name_the_download(monkeypatch):
    """spaCy without en_core_web_sm and NLTK without its data: the message names the download."""

    class FakeSpacy:
        @staticmethod
        def load(name, **kwargs):
            raise OSError(f"[E050] Can't find model '{name}'.")

    class FakeNltk:
        @staticmethod
        def word_tokenize(text):
            raise LookupError("Resource punkt_tab not found. Please use the NLTK Downloader")

        pos_tag = word_tokenize

    monkeypatch.setitem(sys.modules, "spacy", FakeSpacy)
    monkeypatch.setitem(sys.modules, "nltk", FakeNltk)
    with pytest.raises(TaggerUnavailable, match="python -m spacy download en_core_web_sm"):
        resolve_tagger("spacy")
    with pytest.raises(
        TaggerUnavailable,
        match="python -m nltk.downloader averaged_perceptron_tagger_eng punkt_tab",
    ):
        resolve_tagger("nltk")
    with pytest.raises(TaggerUnavailable, match="none is available"):
        resolve_tagger("auto")


def test_auto_falls_back_to_nltk(monkeypatch):
    class FakeNltk:
        @staticmethod
        def word_tokenize(text):
            return tokenize(text)

        @staticmethod
        def pos_tag(tokens):
            return penn(tokens)

    monkeypatch.setattr(nv_text, "_spacy_tagger", _raise_unavailable)
    monkeypatch.setitem(sys.modules, "nltk", FakeNltk)
    assert nouns_and_verbs(PAPER) == PAPER_NV


def _raise_unavailable():
    raise TaggerUnavailable("spaCy is not installed")


# -- the real taggers, when installed with their models --------------------------------------------


def _available(backend) -> str | None:
    try:
        backend()
    except TaggerUnavailable as err:
        return str(err).splitlines()[0]
    return None


@pytest.mark.parametrize("name", ["spacy", "nltk"])
def test_real_tagger_on_the_paper_example(name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (optional; not a project dependency)")
    problem = _available(nv_text._spacy_tagger if name == "spacy" else nv_text._nltk_tagger)
    if problem:
        pytest.skip(f"{name} tagger not usable offline: {problem}")
    result = nouns_and_verbs(PAPER + ".", tagger=name)
    assert result.startswith("Vehicle ") and result.endswith(".")  # the paper: PAPER_NV
    words = set(result.rstrip(".").lower().split())
    assert {"vehicle", "passing", "forest", "road", "birds", "background"} <= words
    assert not words & {"a", "is", "through", "as", "in", "the"}


def drop_articles(tokens):
    """Every token a noun except articles."""
    return [(t, "DT" if t.lower() in {"a", "an", "the"} else "NN") for t in tokens]


def test_usable_from_a_data_config_by_wrapping_the_pairs_node():
    """The config form of docs/data.md#nv-text: nv_transform around another pairs node (Hydra)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "humanclap.data.transforms.nv_text.nv_transform",
            "splits": ["train"],
            "tagger": {"_target_": f"{__name__}.drop_articles", "_partial_": True},
            "pairs": {
                "_target_": "humanclap.data.synthetic.events.synthetic_events",
                "n_clips": 10,
                "seed": 0,
            },
        }
    )
    pairs = instantiate(cfg)
    source = instantiate(cfg.pairs)
    assert pairs.name == "synthetic_events:nv" and len(pairs) == len(source)
    for nv, original in zip(pairs, source):
        if original.split == "train":
            assert nv.text == " ".join(w for w in original.text.split() if w not in {"a", "an"})
        else:
            assert nv.text == original.text
    assert any(nv.text != original.text for nv, original in zip(pairs, source))
