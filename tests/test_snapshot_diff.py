"""The word diff every page shows changes with: words, not characters; whole
values when too little survives."""

from __future__ import annotations

from webapp.web.snapshot_diff import Segment, diff_snapshots, diff_words, tokens


def marked(segments: list[Segment]) -> str:
    """Segments as text, deletions in [-...-], insertions in {+...+}."""
    form = {"same": "{}", "del": "[-{}-]", "ins": "{{+{}+}}"}
    return "".join(form[segment.kind].format(segment.text) for segment in segments)


def test_tokens_are_words_spaces_and_single_marks():
    assert tokens("ada.king@example.com") == ["ada", ".", "king", "@", "example", ".", "com"]
    assert tokens("Grace  Hopper") == ["Grace", "  ", "Hopper"]
    assert "".join(tokens("Zoë O\u2019Brien-Smith ")) == "Zoë O\u2019Brien-Smith "


def test_an_inserted_word_is_marked_as_a_whole():
    before, after = diff_words("Grace Hopper", "Grace Murray Hopper")
    assert marked(before) == "Grace Hopper"
    assert marked(after) == "Grace {+Murray +}Hopper"


def test_a_rewritten_word_is_replaced_whole_not_in_fragments():
    # The character diff showed "Alexand[e]r" / "Alexand{ra}": unreadable.
    before, after = diff_words("Alexander Hamilton", "Alexandra Hamilton")
    assert marked(before) == "[-Alexander-] Hamilton"
    assert marked(after) == "{+Alexandra+} Hamilton"


def test_a_value_rewritten_beyond_recognition_is_shown_replaced_whole():
    before, after = diff_words("Alexander Hamilton", "Sasha Kim Hamilton-Smith")
    assert before == [Segment("del", "Alexander Hamilton")]
    assert after == [Segment("ins", "Sasha Kim Hamilton-Smith")]
    # A lone word rewritten is a whole value replaced, never "Alexand[e]r".
    assert diff_words("Alexander", "Alexandra") == (
        [Segment("del", "Alexander")],
        [Segment("ins", "Alexandra")],
    )


def test_spaces_between_two_changes_belong_to_the_change():
    before, after = diff_words(
        "Dr Ada Lovelace of London and Paris", "Dr Augusta King of London and Paris"
    )
    assert marked(before) == "Dr [-Ada Lovelace-] of London and Paris"
    assert marked(after) == "Dr {+Augusta King+} of London and Paris"


def test_an_email_changes_by_its_parts():
    before, after = diff_words("ada.lovelace@example.com", "ada.king@example.com")
    assert marked(before) == "ada.[-lovelace-]@example.com"
    assert marked(after) == "ada.{+king+}@example.com"


def test_equal_and_empty_strings():
    assert diff_words("same", "same") == ([Segment("same", "same")], [Segment("same", "same")])
    assert diff_words("", "new") == ([], [Segment("ins", "new")])
    assert diff_words("old", "") == ([Segment("del", "old")], [])


def test_snapshots_line_up_key_by_key_as_json():
    lines = {
        line.key: line
        for line in diff_snapshots(
            {"name": "Alexander Hamilton", "email": "a@x.org", "deleted_at": None},
            {"name": "Alexandra Hamilton", "email": "a@x.org", "deleted_at": "2026-12-01T00:00Z"},
        )
    }
    assert [line.key for line in lines.values()] == ["name", "email", "deleted_at"]
    assert lines["email"].status == "same"
    assert marked(lines["name"].before) == '"[-Alexander-] Hamilton"'
    assert marked(lines["name"].after) == '"{+Alexandra+} Hamilton"'
    assert marked(lines["deleted_at"].before) == "[-null-]"
    assert marked(lines["deleted_at"].after) == '{+"2026-12-01T00:00Z"+}'


def test_a_new_profile_has_every_key_added_and_strings_keep_json_escapes():
    lines = diff_snapshots(None, {"name": 'Say "hi"', "email": "e@x.org", "deleted_at": None})
    assert [line.status for line in lines] == ["added", "added", "added"]
    assert lines[0].after == [Segment("ins", '"Say \\"hi\\""')]
    changed = diff_snapshots({"name": 'Say "hi" now'}, {"name": 'Say "hi" later'})[0]
    assert marked(changed.after) == '"Say \\"hi\\" {+later+}"'


def test_a_field_the_entry_records_as_changed_stays_changed_once_both_sides_read_erased():
    before = {"name": "[erased]", "email": "[erased]", "deleted_at": None}
    after = {"name": "[erased]", "email": "[erased]", "deleted_at": None}
    statuses = {line.key: line.status for line in diff_snapshots(before, after, ["name"])}
    assert statuses == {"name": "changed", "email": "same", "deleted_at": "same"}
    assert [line.status for line in diff_snapshots(before, after)] == ["same"] * 3
