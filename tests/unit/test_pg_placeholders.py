"""``?`` placeholders as PostgreSQL's ``$n``: only the placeholders, never a ``?`` a literal, a quoted
name or a comment holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oms.db.postgres import _to_dollar


def test_placeholders_are_numbered_in_order() -> None:
    assert _to_dollar("UPDATE t SET a = ?, b = ? WHERE id = ? AND x > ?") == (
        "UPDATE t SET a = $1, b = $2 WHERE id = $3 AND x > $4"
    )
    assert _to_dollar("SELECT 1") == "SELECT 1"


def test_a_question_mark_in_a_literal_a_name_or_a_comment_is_left_as_it_is() -> None:
    assert _to_dollar("SELECT 'why?' AS q, ? AS p") == "SELECT 'why?' AS q, $1 AS p"
    assert _to_dollar("SELECT 'it''s ? here', ?") == "SELECT 'it''s ? here', $1"
    assert _to_dollar('SELECT "odd?name" FROM t WHERE a = ?') == 'SELECT "odd?name" FROM t WHERE a = $1'
    assert _to_dollar("SELECT ? -- what?\nFROM t WHERE a = ?") == "SELECT $1 -- what?\nFROM t WHERE a = $2"
    assert _to_dollar("SELECT /* ? */ ? - ?/2") == "SELECT /* ? */ $1 - $2/2"


@given(st.lists(st.sampled_from(["a = ", "?", ", ", "'x?y'", "'it''s'", '"n?"', " - ", "/", "b"]), max_size=30))
def test_the_placeholders_outside_literals_are_counted_once_each(parts: list[str]) -> None:
    sql = "".join(parts)
    converted = _to_dollar(sql)
    placeholders = parts.count("?")
    assert [f"${n}" in converted for n in range(1, placeholders + 1)] == [True] * placeholders
    assert f"${placeholders + 1}" not in converted
    assert converted.replace("$", "").count("?") == sql.count("?") - placeholders
