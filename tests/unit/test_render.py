"""Template rendering: strict, sandboxed, errors naming the part that failed."""

from __future__ import annotations

import pytest

from core.render import TemplateError, lead_context, render


def ctx(**attrs: object) -> dict[str, object]:
    return lead_context(
        email="bob@example.test",
        first_name="Bob",
        last_name=None,
        company="Initech",
        attributes=attrs,
        extra={"unsubscribe_url": "u"},
    )


def test_fields_and_attributes() -> None:
    out = render(
        "Hi {{ first_name }} at {{ company }}, plan {{ plan }} {{ attributes.plan }}",
        ctx(plan="pro"),
        part="body_text",
    )
    assert out == "Hi Bob at Initech, plan pro pro"


def test_none_renders_empty_and_defaults_work() -> None:
    assert render("[{{ last_name }}]{{ tier | default('free') }}", ctx(), part="x") == "[]free"


def test_columns_win_over_attributes() -> None:
    assert render("{{ first_name }}", ctx(first_name="Mallory"), part="x") == "Bob"


def test_html_is_escaped_text_is_not() -> None:
    c = ctx(note="<b>&</b>")
    assert render("{{ note }}", c, part="body_html", html=True) == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert render("{{ note }}", c, part="body_text") == "<b>&</b>"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Hi {{ nickname }}", "subject: 'nickname' is undefined"),
        ("Hi {{ first_name ", "subject: syntax error at line 1"),
        ("{{ 1 // 0 }}", "subject: ZeroDivisionError"),
        ("{{ ''.__class__.__mro__ }}", "subject: "),
        ("{% for i in range(10**9) %}{% endfor %}", "subject: OverflowError: Range too big"),
    ],
)
def test_failures_are_template_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(source, ctx(), part="subject")
    assert str(err.value).startswith(message)
