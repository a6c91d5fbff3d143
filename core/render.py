"""Step templates: Jinja2 in a sandbox, strict about undefined names, cached per source."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(ValueError):
    """A step template failed to compile or render; the message says which part and why."""


def _finalize(value: Any) -> Any:
    return "" if value is None else value


_ENVS = {
    autoescape: ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        finalize=_finalize,
        keep_trailing_newline=True,
    )
    for autoescape in (False, True)
}


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool) -> jinja2.Template:
    return _ENVS[html].from_string(source)


def render(source: str, context: Mapping[str, Any], *, part: str, html: bool = False) -> str:
    """Render one template; any failure becomes a TemplateError naming `part`."""
    try:
        return _compile(source, html).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{part}: syntax error at line {exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{part}: {exc.message}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{part}: not allowed: {exc}") from exc
    except Exception as exc:  # a template can raise anything (division by zero, bad filter args)
        raise TemplateError(f"{part}: {type(exc).__name__}: {exc}") from exc


def lead_context(
    *,
    email: str,
    first_name: str | None,
    last_name: str | None,
    company: str | None,
    attributes: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Template variables: the lead's attributes, overlaid by its columns and `extra`."""
    ctx: dict[str, Any] = {k: v for k, v in attributes.items() if isinstance(k, str)}
    ctx.update(
        email=email,
        first_name=first_name,
        last_name=last_name,
        company=company,
        attributes=dict(attributes),
    )
    ctx.update(extra)
    return ctx
