"""Event-ordering text manipulations on real AudioCaps captions (MIT, copied verbatim from
/work/shared/data/audiocaps/audiocaps_v1_temporal_connective_captions.tsv) and a few constructed
edge cases: what is changed, what is kept, and every skip reason."""

from __future__ import annotations

import pytest

from humanclap.text import (
    MANIPULATIONS,
    SKIP_REASONS,
    ManipulationStats,
    find_connectives,
    manipulate_all,
    swap_as_then,
    swap_before_after,
    swap_clauses,
)


def changed(manipulation, text: str) -> str:
    result = manipulation(text)
    assert result.ok, result
    assert result.skip is None and result.original == text.strip()
    return result.text


def skipped(manipulation, text: str, reason: str) -> str:
    result = manipulation(text)
    assert not result.ok and result.text is None, result
    assert result.skip == reason, result
    return result.detail


# -- finding connectives ---------------------------------------------------------------------------


def test_connectives_are_whole_words_any_case_and_spacing():
    found = find_connectives(
        "BEFORE the afternoon, a dog Barks then  birds chirp, followed   by rain; as-yet aftermath"
    )
    assert [(c.word, c.written) for c in found] == [
        ("before", "BEFORE"),
        ("then", "then"),
        ("followed by", "followed   by"),
    ]
    assert found[0].at_sentence_start and not found[1].at_sentence_start
    assert [
        c.word
        for c in find_connectives("Rain falls while thunder roars during a storm as wind blows")
    ] == ["while", "during", "as"]
    assert find_connectives("An afternoon thunderstorm, an after-effect, a then-new engine") == []


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("Chirping as well as continuous running water", "as well as"),  # real
        ("A truck is revving its engine as high as it can go", "as ... as"),  # real
        ("A man speaks and a dog barks as well", "as well"),
        ("Farm animals such as a horse and a pig", "such as"),
        ("A pig squeals as if in pain", "as if"),
        ("It sounds as though it rains", "as though"),
        ("A cat meowing before and after plastic rattling", "before and after"),  # real
        (
            "Large sharp explosions one after another with some bug noises from outside",
            "one after another",
        ),  # real
        ("Several beeps happen one after the other", "one after another"),  # real
        (
            "One explosion after another blasts as a helicopter engine runs the whole time",
            "one after another",
        ),  # real
        (
            "Waves splash against the beach while the sound o someone grunting now and then happens",
            "now and then",
        ),  # real
    ],
)
def test_fixed_phrases_are_not_connectives(text, phrase):
    fixed = [c for c in find_connectives(text) if not c.temporal]
    assert fixed and all(c.fixed_phrase == phrase for c in fixed)


def test_as_a_is_temporal():
    (c,) = find_connectives("A young male speaks as a small door opens")  # real
    assert c.word == "as" and c.temporal


# -- before <-> after (BAT) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # real captions
        (
            "A woman sneezes before describing the side effects of her cold",
            "A woman sneezes after describing the side effects of her cold",
        ),
        ("A man speaks after gunshots.", "A man speaks before gunshots."),
        (
            "A person snores nearby loudly, after which a man talks nearby",
            "A person snores nearby loudly, before which a man talks nearby",
        ),
        (
            "A male speaking right before starting an engine",
            "A male speaking right after starting an engine",
        ),
        (
            "A truck engine idling then accelerates shortly after",
            "A truck engine idling then accelerates shortly before",
        ),
        # other connectives are left alone and do not block
        (
            "A child speaks then makes a whistle sound before blaring a siren",
            "A child speaks then makes a whistle sound after blaring a siren",
        ),
        # constructed: case per word, sentence-initial, surrounding whitespace
        ("Before a dog barks, a man speaks.", "After a dog barks, a man speaks."),
        ("A MAN SPEAKS BEFORE A DOG BARKS", "A MAN SPEAKS AFTER A DOG BARKS"),
        ("  rain falls after thunder  ", "rain falls before thunder"),
    ],
)
def test_swap_before_after(text, expected):
    assert changed(swap_before_after, text) == expected
    assert swap_before_after(text).connective == ("before" if "before" in text.lower() else "after")
    assert changed(swap_before_after, expected) == text.strip()  # its own inverse


def test_swap_before_after_skips():
    # real: two of them
    assert (
        skipped(
            swap_before_after,
            "A motorbike engine running idle before accelerating after a man shouts "
            "while wind is blowing into a microphone",
            "several_connectives",
        )
        == "before, after"
    )
    assert (
        skipped(
            swap_before_after, "A cat meowing before and after plastic rattling", "fixed_phrase"
        )
        == "before and after"
    )
    skipped(swap_before_after, "Different ring tones playing one after another", "fixed_phrase")
    skipped(swap_before_after, "A woman talks nearby as water pours", "no_connective")  # real
    skipped(swap_before_after, "An afternoon thunderstorm", "no_connective")


# -- clause swap ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # the paper's example (§3.2)
        (
            "Two cars drive past before a distant semi truck honks",
            "A distant semi truck honks before two cars drive past",
        ),
        # real captions
        ("A man speaks followed by applause", "Applause followed by a man speaks"),
        ("A man speaks after gunshots.", "Gunshots after a man speaks."),
        ("Rustling and then a dog barking", "A dog barking and then rustling"),
        (
            "A bird or animal makes a noise, then a dog barks",
            "A dog barks, then a bird or animal makes a noise",
        ),
        (
            "A person snores nearby loudly, after which a man talks nearby",
            "A man talks nearby, after which a person snores nearby loudly",
        ),
        ("A loud long burp is followed by a laugh", "A laugh is followed by a loud long burp"),
        (
            "A few slams are followed by referee whistles",
            "Referee whistles are followed by a few slams",
        ),
        (
            "Scratching noise shortly followed by goats bleating",
            "Goats bleating shortly followed by scratching noise",
        ),
        (
            "A man speaks briefly just before numerous guns are shot off",
            "Numerous guns are shot off just before a man speaks briefly",
        ),
        (
            "A person whistles briefly followed by some light banging",  # "briefly" stays with its clause
            "Some light banging followed by a person whistles briefly",
        ),
        (
            "Wind blows and birds chirp, followed by footsteps of a horse on dirt",
            "Footsteps of a horse on dirt, followed by wind blows and birds chirp",
        ),
        (
            "A dog barks several times, and then music starts to play in the background",
            "Music starts to play in the background, and then a dog barks several times",
        ),
        (
            "A train rattle by on tracks nearby and shortly after that a steam whistle hisses",
            "A steam whistle hisses and shortly after that a train rattle by on tracks nearby",
        ),
        # simultaneity connectives travel with their clause
        (
            "An electric motor buzzes while a male speaks followed by a sputtering engine with a male continuing to speak",  # noqa: E501
            "A sputtering engine with a male continuing to speak followed by an electric motor buzzes while a male speaks",  # noqa: E501
        ),
        # capitalisation: acronyms / all-caps and "I" keep their case; lower-case sentences stay lower-case
        (
            "A person is firing a BB gun and then refills the gun with BB bullets",
            "Refills the gun with BB bullets and then a person is firing a BB gun",
        ),
        ("TV static then a man speaks!", "A man speaks then TV static!"),
        ("I hear a dog bark then a cat meows", "A cat meows then I hear a dog bark"),
        (
            "MUSIC FOLLOWED BY AN APPLAUSE AND A MAN SPAEKING",
            "AN APPLAUSE AND A MAN SPAEKING FOLLOWED BY MUSIC",
        ),
        ("a man speaks then a dog barks", "a dog barks then a man speaks"),
        ("2 dogs bark   before a man speaks...", "a man speaks before 2 dogs bark..."),
    ],
)
def test_swap_clauses(text, expected):
    assert changed(swap_clauses, text) == expected


def test_clause_swap_twice_is_the_original_and_names_the_preposition():
    for text, prep in [
        ("Two cars drive past before a distant semi truck honks", "before"),
        ("A frog croaks three times and then a click occurs", "then"),
        ("Machine gun fire followed by man speaking", "followed by"),
        ("A woman starts to talk after a sewing machine is turned off", "after"),
    ]:
        assert swap_clauses(text).connective == prep
        assert changed(swap_clauses, changed(swap_clauses, text)) == text


@pytest.mark.parametrize(
    "text, reason",
    [
        ("A man speaks then coughs followed by laughter", "several_connectives"),  # real
        (
            "A clanging noise and then a pouring noise and then more clanging",
            "several_connectives",
        ),  # real
        (
            "Bubbling water, along with the voice of a woman; then a drum beat kicks in",
            "several_sentences",
        ),  # real
        (
            "People are talking in the background and a dog starts barking loudly. Then a woman begins to laugh",
            "several_sentences",
        ),  # real
        (
            "After a loud horn the gates ding and go down as a train is coming down the track",
            "connective_at_start",
        ),  # real
        ("And then a dog barks", "connective_at_start"),
        ("Man speaking microphone with crowd cheering after", "connective_at_end"),  # real
        ("A very short spray and silence after that.", "connective_at_end"),
        (
            "Large sharp explosions one after another with some bug noises from outside",
            "fixed_phrase",
        ),  # real
        ("A woman talks nearby as water pours", "no_connective"),  # real
        ("The sizzling of food while a dish is clanking", "no_connective"),  # real
    ],
)
def test_swap_clauses_skips(text, reason):
    skipped(swap_clauses, text, reason)


# -- as <-> then -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected, connective",
    [
        # real captions
        ("A man speaks as water runs", "A man speaks then water runs", "as"),
        (
            "A young male speaks as a small door opens",
            "A young male speaks then a small door opens",
            "as",
        ),
        ("A man sneezes then speaks", "A man sneezes as speaks", "then"),
        (
            "A man speaks and then slamming and splintering occurs",
            "A man speaks as slamming and splintering occurs",
            "then",
        ),
        (
            "Food sizzles in a pan, and then a woman speaks quickly",
            "Food sizzles in a pan, as a woman speaks quickly",
            "then",
        ),
        (
            "A bird or animal makes a noise, then a dog barks",
            "A bird or animal makes a noise, as a dog barks",
            "then",
        ),
        # a fixed phrase does not block the temporal connective
        (
            "Birds chirping as well as brief laughter and then speech",
            "Birds chirping as well as brief laughter as speech",
            "then",
        ),
        # case per word, trailing punctuation
        ("A MAN SPEAKS AS WATER RUNS.", "A MAN SPEAKS THEN WATER RUNS.", "as"),
    ],
)
def test_swap_as_then(text, expected, connective):
    assert changed(swap_as_then, text) == expected
    assert swap_as_then(text).connective == connective


@pytest.mark.parametrize(
    "text, reason, detail",
    [
        ("Chirping as well as continuous running water", "fixed_phrase", "as well as"),  # real
        ("A truck is revving its engine as high as it can go", "fixed_phrase", "as ... as"),  # real
        ("Farm animals such as a horse", "fixed_phrase", "such as"),
        ("A pig squeals as if in pain", "fixed_phrase", "as if"),
        (
            "Steam hissing as a train runs slowly on railroad tracks as gears crank and rumble",
            "several_connectives",
            "as, as",
        ),  # real
        ("A man speaks as water runs then a dog barks", "several_connectives", "as, then"),
        (
            "As the wind blows steadily a bird sings and an engine goes by",
            "connective_at_start",
            "",
        ),  # real
        ("Then a man speaks", "connective_at_start", ""),
        ("A dog barks. And then a man speaks", "connective_at_start", ""),
        ("Power drill is being used a woman speaks then", "connective_at_end", ""),  # real
        ("Someone has a hiccup while typing", "no_connective", ""),  # real
    ],
)
def test_swap_as_then_skips(text, reason, detail):
    assert skipped(swap_as_then, text, reason) == detail


# -- counting ----------------------------------------------------------------------------------------


def test_stats_count_kept_and_skipped_by_reason():
    texts = [
        "A man speaks as water runs",
        "Rain falls then thunder roars",
        "Farm animals such as a horse",
        "Chirping as well as running water",
        "A dog barks",
        "A cat meows",
        "Then a man speaks",
    ]
    results, stats = manipulate_all(texts, swap_as_then)
    assert [r.ok for r in results] == [True, True, False, False, False, False, False]
    assert stats.kept == {"as": 1, "then": 1} and stats.n_kept == 2 and stats.n_skipped == 5
    assert stats.skipped == {"fixed_phrase": 2, "no_connective": 2, "connective_at_start": 1}
    assert stats.fixed_phrases == {"such as": 1, "as well as": 1}
    assert stats.metrics() == {
        "skipped/no_connective": 2.0,
        "skipped/fixed_phrase": 2.0,
        "skipped/connective_at_start": 1.0,
    }
    assert list(stats.metrics(prefix="x/")) == [
        "x/no_connective",
        "x/fixed_phrase",
        "x/connective_at_start",
    ]
    text = str(stats)
    assert text.startswith(
        "kept 2 (as 1, then 1); skipped 5: 2 x no_connective (e.g. 'A dog barks')"
    )
    assert (
        "2 x fixed_phrase [such as 1, as well as 1] (e.g. 'Farm animals such as a horse')" in text
    )
    assert str(ManipulationStats()) == "kept 0, none skipped"
    assert set(SKIP_REASONS) == {
        "no_connective",
        "fixed_phrase",
        "several_connectives",
        "several_sentences",
        "connective_at_start",
        "connective_at_end",
    }


def test_manipulations_are_pure_and_deterministic():
    text = "A man speaks before a dog barks, then a car passes"
    assert set(MANIPULATIONS) == {"before_after", "clause_swap", "as_then"}
    for kind, manipulation in MANIPULATIONS.items():
        first, second = manipulation(text), manipulation(text)
        assert first == second and first.kind == kind and first.original == text
