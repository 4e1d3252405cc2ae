"""read_prompts: a table (CSV, JSONL) or a folder of clips plus a prompts table; ids; every bad input
named by file and line, clips without prompts and prompts without clips counted and named."""

from __future__ import annotations

import json

import pytest
from fakes import write_csv

from humanclap.data.pairs import DataError, RatedPair, RatedPairs
from humanclap.data.readers.prompts import PromptedClips, prompted_from_pairs, read_prompts


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "b.flac", "c.mp3"):
        (folder / name).write_bytes(b"")  # the reader checks existence only
    return folder


def write_jsonl(path, objects):
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n", encoding="utf-8")
    return path


def _plain(pairs: PromptedClips):
    return [(p.id, p.audio, p.text) for p in pairs]


def test_a_csv_table_in_input_order_with_paths_resolved_and_lines_named(tmp_path, clips):
    table = write_csv(
        tmp_path / "prompts.csv",
        ["audio", "text"],
        [("clips/b.flac", " rain on a roof "), ("clips/a.wav", "a dog barks")],
    )
    pairs = read_prompts(table)
    assert _plain(pairs) == [
        ("clips/b.flac", "clips/b.flac", "rain on a roof"),
        ("clips/a.wav", "clips/a.wav", "a dog barks"),
    ]
    assert [p.key for p in pairs] == [str(clips / "b.flac"), str(clips / "a.wav")]
    assert [p.source for p in pairs] == [f"{table}, line 2", f"{table}, line 3"]
    assert pairs.name == "prompts.csv" and not pairs.rated
    assert all(p.human_score is None for p in pairs)


def test_jsonl_audio_root_custom_columns_and_ids(tmp_path, clips):
    table = write_jsonl(
        tmp_path / "elsewhere.jsonl",
        [
            {"clip": "a.wav", "prompt": "a dog barks", "uid": 7},
            {"clip": str(clips / "b.flac"), "prompt": "rain", "uid": "x"},
        ],
    )
    pairs = read_prompts(
        table, audio_root=clips, audio_column="clip", text_column="prompt", id_column="uid"
    )
    assert _plain(pairs) == [("7", "a.wav", "a dog barks"), ("x", str(clips / "b.flac"), "rain")]
    assert [p.key for p in pairs] == [str(clips / "a.wav"), str(clips / "b.flac")]


def test_a_clip_with_several_prompts_gets_numbered_ids_and_a_repeated_pair_is_refused(
    tmp_path, clips
):
    rows = [("clips/a.wav", "a dog"), ("clips/b.flac", "rain"), ("clips/a.wav", "a cat")]
    pairs = read_prompts(write_csv(tmp_path / "p.csv", ["audio", "text"], rows))
    assert [p.id for p in pairs] == ["clips/a.wav#1", "clips/b.flac", "clips/a.wav#2"]
    rows.append(("./clips/a.wav", "a dog"))  # the same clip written differently, the same text
    with pytest.raises(
        DataError, match=r"p.csv, line 5: repeats the pair of line 2 \(same clip, same text\)"
    ):
        read_prompts(write_csv(tmp_path / "p.csv", ["audio", "text"], rows))


def test_the_folder_layout_matches_names_with_or_without_suffix(tmp_path, clips):
    (clips / "notes.txt").write_text("not audio")
    (clips / ".hidden.wav").write_bytes(b"")
    (clips / "sub").mkdir()
    (clips / "sub" / "d.wav").write_bytes(b"")
    table = write_csv(
        tmp_path / "prompts.csv",
        ["file", "text"],
        [("c.mp3", "a bell"), ("a", "a dog barks"), ("./b.flac", "rain")],
    )
    pairs = read_prompts(clips, prompts=table)
    assert _plain(pairs) == [
        ("c.mp3", "c.mp3", "a bell"),
        ("a.wav", "a.wav", "a dog barks"),
        ("b.flac", "b.flac", "rain"),
    ]
    assert [p.key for p in pairs] == [str(clips / n) for n in ("c.mp3", "a.wav", "b.flac")]
    assert pairs.name == "clips" and pairs[0].source == f"{table}, line 2"

    # recursive: the subfolder's clip needs a prompt too, and gets one by its relative name
    with pytest.raises(DataError, match=r"1 of 4 audio file\(s\) have no prompt .*'sub/d.wav'"):
        read_prompts(clips, prompts=table, recursive=True)
    with open(table, "a", encoding="utf-8") as handle:
        handle.write("sub/d.wav,a drum\n")
    pairs = read_prompts(clips, prompts=table, recursive=True)
    assert pairs[-1].audio == "sub/d.wav" and pairs[-1].key == str(clips / "sub" / "d.wav")


def test_prompts_without_audio_are_counted_and_named(tmp_path, clips):
    rows = [("a.wav", "a dog"), ("b.flac", "rain"), ("c.mp3", "a bell")]
    rows += [(f"gone{i}.wav", f"text {i}") for i in range(7)]
    table = write_csv(tmp_path / "prompts.csv", ["file", "text"], rows)
    with pytest.raises(DataError) as error:
        read_prompts(clips, prompts=table)
    assert str(error.value) == (
        f"{table}: 7 prompt(s) name no audio file in {clips} (subfolders only with "
        f"data.recursive=true): 'gone0.wav' (line 5), 'gone1.wav' (line 6), 'gone2.wav' (line 7), "
        f"'gone3.wav' (line 8), 'gone4.wav' (line 9) and 2 more"
    )


def test_audio_without_prompts_is_counted_and_named(tmp_path, clips):
    table = write_csv(tmp_path / "prompts.csv", ["file", "text"], [("b.flac", "rain")])
    with pytest.raises(DataError) as error:
        read_prompts(clips, prompts=table)
    assert str(error.value) == (
        f"{clips}: 2 of 3 audio file(s) have no prompt in {table}: 'a.wav', 'c.mp3'; add a row "
        f"(file,text) for each, or move them out of the folder"
    )
    # both at once: one message, both parts
    write_csv(table, ["file", "text"], [("b.flac", "rain"), ("x.wav", "wind")])
    with pytest.raises(DataError, match=r"1 prompt\(s\) name no audio .*; and .*2 of 3 audio"):
        read_prompts(clips, prompts=table)


def test_missing_files_of_a_table_are_counted_and_named(tmp_path, clips):
    table = write_csv(
        tmp_path / "prompts.csv",
        ["audio", "text"],
        [("clips/a.wav", "a dog"), ("clips/x.wav", "wind"), ("clips/x.wav", "air"), ("y.wav", "z")],
    )
    with pytest.raises(DataError) as error:
        read_prompts(table)
    assert str(error.value) == (
        f"{table}: 2 audio file(s) named in column 'audio' not found under {tmp_path}: "
        f"'clips/x.wav' (line 3), 'y.wav' (line 5); relative paths are read from the table's "
        f"folder (data.audio_root=<folder> sets another)"
    )


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["audio", "prompt"], [("clips/a.wav", "x")], r"missing required column\(s\) \['text'\]; "),
        (["audio", "text"], [("clips/a.wav", "  ")], r"p.csv, line 2: empty text$"),
        (["audio", "text"], [("", "x")], r"p.csv, line 2: empty audio$"),
        (["audio", "text"], [], r"p.csv: no rows \(nothing to score\)$"),
    ],
    ids=["missing-column", "empty-text", "empty-audio", "no-rows"],
)
def test_bad_tables_are_named_by_line(tmp_path, clips, header, rows, message):
    with pytest.raises(DataError, match=message):
        read_prompts(write_csv(tmp_path / "p.csv", header, rows))


def test_bad_jsonl_and_ids_are_named_by_line(tmp_path, clips):
    table = write_jsonl(
        tmp_path / "p.jsonl", [{"audio": "clips/a.wav", "text": "x"}, {"audio": "clips/a.wav"}]
    )
    with pytest.raises(
        DataError, match=r"p.jsonl, line 2: missing required column\(s\) \['text'\]"
    ):
        read_prompts(table)
    write_jsonl(table, [{"audio": "clips/a.wav", "text": ["x"]}])
    with pytest.raises(DataError, match=r"p.jsonl, line 1: text must be a string, got \['x'\]"):
        read_prompts(table)
    rows = [("1", "clips/a.wav", "x"), ("1", "clips/b.flac", "y")]
    with pytest.raises(DataError, match=r"p.csv, line 3: id '1' is also the id of line 2"):
        read_prompts(write_csv(tmp_path / "p.csv", ["id", "audio", "text"], rows), id_column="id")


def test_layout_mistakes_say_what_to_pass(tmp_path, clips):
    table = write_csv(tmp_path / "p.csv", ["audio", "text"], [("clips/a.wav", "x")])
    with pytest.raises(DataError, match=r"is a folder of clips: name the table .* data.prompts="):
        read_prompts(clips)
    with pytest.raises(DataError, match=r"data.prompts=.* but data.path=.* is a file"):
        read_prompts(table, prompts=table)
    with pytest.raises(DataError, match=r"no such file"):
        read_prompts(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"unsupported table format '.tsv'"):
        read_prompts(write_csv(tmp_path / "p.tsv", ["audio", "text"], [("a", "b")]))
    (clips / "a.ogg").write_bytes(b"")
    with pytest.raises(DataError, match=r"line 2: file 'a' matches 2 clips .*a.ogg, a.wav"):
        read_prompts(clips, prompts=write_csv(tmp_path / "f.csv", ["file", "text"], [("a", "x")]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no audio files \(.wav, .flac"):
        read_prompts(empty, prompts=table)


def test_rated_pairs_keep_their_human_score(tmp_path):
    pairs = RatedPairs(
        [
            RatedPair("/x/a.wav", "a dog", 0.25, source="r.csv, line 2"),
            RatedPair("/x/a.wav", "a cat", 1.0),
            RatedPair("/x/b.wav", "rain", 0.5),
        ],
        audio_store=None,
        name="ratings",
    )
    scored = prompted_from_pairs(pairs)
    assert scored.rated and scored.name == "ratings" and scored.audio_store is None
    assert [(p.id, p.audio, p.key, p.text, p.human_score) for p in scored] == [
        ("/x/a.wav#1", "/x/a.wav", "/x/a.wav", "a dog", 0.25),
        ("/x/a.wav#2", "/x/a.wav", "/x/a.wav", "a cat", 1.0),
        ("/x/b.wav", "/x/b.wav", "/x/b.wav", "rain", 0.5),
    ]
    assert scored[0].source == "r.csv, line 2"
