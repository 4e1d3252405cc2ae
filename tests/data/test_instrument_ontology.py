"""The instrument ontology: loading and validation, LCA depth, and the triplet rule
depth(LCA(a, p)) > depth(LCA(a, n)) on a toy tree and on the shipped one."""

from __future__ import annotations

import itertools
import json

import pytest

from humanclap.data.readers.instrument_ontology import Ontology, OntologyError, Triplet, triplets
from humanclap.data.readers.labelled_audio import TINYSOL_INSTRUMENTS
from humanclap.data.synthetic.instruments import INSTRUMENTS

# root (0) ── strings (1) ── bowed (2) ── violin, viola (3)
#          │              └─ plucked (2) ── guitar (3)
#          └─ winds (1) ──── reeds (2) ── single (3) ── clarinet (4)      (deeper on purpose)
#                         │             └ double (3) ── oboe (4)
#                         └─ flutes (2) ── flute (3)
TOY = {
    "strings": {"bowed": ["violin", "viola"], "plucked": ["guitar"]},
    "winds": {"reeds": {"single": ["clarinet"], "double": ["oboe"]}, "flutes": ["flute"]},
}
CLASSES = ["violin", "viola", "guitar", "clarinet", "oboe", "flute"]


@pytest.fixture
def toy():
    return Ontology(TOY, root="root", aliases={"fiddle": "violin"}, name="toy")


def test_depths_paths_and_lowest_common_ancestors(toy):
    assert toy.depth["root"] == 0 and toy.depth["bowed"] == 2 and toy.depth["clarinet"] == 4
    assert toy.path("oboe") == ["root", "winds", "reeds", "double", "oboe"]
    assert toy.lca("violin", "viola") == "bowed" and toy.lca_depth("violin", "viola") == 2
    assert toy.lca("violin", "guitar") == "strings" and toy.lca_depth("violin", "guitar") == 1
    assert toy.lca("clarinet", "oboe") == "reeds" and toy.lca_depth("clarinet", "flute") == 1
    assert toy.lca("violin", "flute") == "root" and toy.lca_depth("violin", "flute") == 0
    assert toy.lca("oboe", "oboe") == "oboe"
    assert (
        toy.node("  Fiddle ") == "violin" and toy.node("OBOE") == "oboe"
    )  # aliases, case, white space
    assert toy.family("clarinet") == "winds"


def test_triplets_follow_the_depth_rule_and_are_complete(toy):
    found = triplets(toy, CLASSES)
    # Brute force over every ordered triple of distinct classes.
    expected = [
        (a, p, n)
        for a, p, n in itertools.permutations(CLASSES, 3)
        if toy.lca_depth(a, p) > toy.lca_depth(a, n)
    ]
    assert [
        (t.anchor, t.positive, t.negative) for t in found
    ] == expected  # same triples, same order
    # Per anchor, by hand: violin -> viola (depth 2) vs guitar + 3 winds, guitar (1) vs 3 winds: 4 + 3;
    # clarinet -> oboe (2) vs flute + 3 strings, flute (1) vs 3 strings: 4 + 3; guitar -> violin/viola (1)
    # vs 3 winds: 6; flute -> clarinet/oboe (1) vs 3 strings: 6. Total 7+7+6+7+7+6.
    assert len(found) == 40
    counts = {a: sum(t.anchor == a for t in found) for a in CLASSES}
    assert counts == {"violin": 7, "viola": 7, "guitar": 6, "clarinet": 7, "oboe": 7, "flute": 6}
    assert Triplet("violin", "viola", "guitar", 2, 1) in found
    assert Triplet("clarinet", "flute", "violin", 1, 0) in found
    for t in found:
        assert t.positive_depth > t.negative_depth
        assert t.positive_depth == toy.lca_depth(t.anchor, t.positive)
        assert t.negative_depth == toy.lca_depth(t.anchor, t.negative)
        # No negative from the anchor's family is ever set against a positive from another family,
        # and no negative shares a deeper ancestor with the anchor than the positive does.
        same_family = toy.family(t.anchor) == toy.family(t.negative)
        assert not same_family or toy.family(t.anchor) == toy.family(t.positive)
    # Equally related pairs make no triplet: violin has no (viola vs viola-level) or (flute vs oboe) triplet.
    assert not any(
        t.anchor == "violin" and {t.positive, t.negative} == {"flute", "oboe"} for t in found
    )
    assert not any(
        t.anchor == "violin" and t.positive == "guitar" and t.negative == "viola" for t in found
    )
    assert triplets(toy, CLASSES) == found  # deterministic


def test_triplets_order_follows_the_classes(toy):
    first = triplets(toy, ["flute", "violin", "viola"])
    assert [(t.anchor, t.positive, t.negative) for t in first] == [
        ("violin", "viola", "flute"),
        ("viola", "violin", "flute"),
    ]


def test_a_class_missing_from_the_ontology_is_named(toy):
    with pytest.raises(
        OntologyError,
        match=r"toy: 2 class\(es\) missing from the ontology: 'kazoo', "
        r"'violn' \(close: \['violin', 'viola'\]\)",
    ):
        triplets(toy, ["violin", "kazoo", "violn"])
    with pytest.raises(
        OntologyError, match=r"classes 'violin' and 'fiddle' are the same node 'violin'"
    ):
        toy.require(["violin", "fiddle"])


@pytest.mark.parametrize(
    "tree, aliases, message",
    [
        ({"strings": ["violin"], "winds": ["violin"]}, {}, r"node 'violin' appears twice"),
        ({"strings": []}, {}, r"'strings' has no children"),
        ({"strings": ["violin", 3]}, {}, r"node names must be non-empty strings, got 3"),
        ({"strings": "violin"}, {}, r"under 'strings' expected an object or a list"),
        ({"strings": ["violin"]}, {"fiddle": "fidel"}, r"alias 'fiddle' is not in the ontology"),
        ({"strings": ["violin"]}, {"Violin": "violin"}, r"alias 'Violin' is also a node name"),
    ],
)
def test_malformed_trees_are_refused(tree, aliases, message):
    with pytest.raises(OntologyError, match=message):
        Ontology(tree, aliases=aliases)


def test_loading_from_json(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"root": "all", "tree": TOY, "aliases": {"cello": "viola"}}))
    loaded = Ontology.load(path)
    assert (
        loaded.root == "all"
        and loaded.node("cello") == "viola"
        and loaded.lca("oboe", "flute") == "winds"
    )
    path.write_text("[1, 2]")
    with pytest.raises(
        OntologyError, match=r"o\.json: expected a JSON object with a 'tree' object"
    ):
        Ontology.load(path)
    with pytest.raises(OntologyError, match=r"missing\.json: no such ontology file"):
        Ontology.load(tmp_path / "missing.json")


def test_the_shipped_ontology_is_family_subfamily_instrument_and_covers_tinysol():
    ontology = Ontology.load()
    leaves = [node for node in ontology.parent if node not in set(ontology.parent.values())]
    assert {ontology.depth[leaf] for leaf in leaves} == {3}  # family -> subfamily -> instrument
    tinysol = [prompt for _, prompt in TINYSOL_INSTRUMENTS.values()]
    assert sorted(INSTRUMENTS) == sorted(tinysol)  # the synthetic default uses the same 14 names
    nodes = ontology.require(tinysol)
    assert ontology.path(nodes["clarinet"]) == ["instrument", "wind", "single reed", "clarinet"]
    assert ontology.path(nodes["accordion"]) == ["instrument", "wind", "free reed", "accordion"]
    assert (
        ontology.lca("tuba", "trumpet") == "brass"
        and ontology.lca("violin", "tuba") == "instrument"
    )
    assert ontology.node("cello") == "violoncello" and ontology.node("Double Bass") == "contrabass"
    # 14 TinySOL classes: brass 4, free reed 1, bowed 4, single reed 2, double reed 2, edge-blown 1.
    # Brass anchor: 3 same-subfamily positives x 10 negatives outside it + 6 other winds x 4 strings = 54 (x4);
    # accordion: 9 winds x 4 strings = 36; bowed: 3 x 10 winds = 30 (x4); single/double reed:
    # 1 x 12 + 8 x 4 = 44 (x4); flute: 9 x 4 = 36. 216 + 36 + 120 + 176 + 36 = 584.
    assert len(triplets(ontology, tinysol)) == 584
