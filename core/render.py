"""Step templates: Jinja2 in a sandbox, strict about undefined names, cached per source.

Rendering has a budget. Output is counted as it is produced and stops at `max_bytes`; the
sandbox refuses the operations that build a huge value in one C call, where no timer can
interrupt them (`'a' * 10**9`, `9 ** 9 ** 9`). The time budget is the caller's: the
scheduler renders in a child process that interrupts a template after its time is up.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

DEFAULT_MAX_BYTES = 512 * 1024
# A power whose result would have more bits than this is refused before it is computed.
_MAX_POWER_BITS = 64 * 1024


class TemplateError(ValueError):
    """A step template failed to compile or render; the message says which part and why."""


class BudgetExceeded(TemplateError):
    """Rendering went over its time or size budget."""


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` and `**` checked for the size of what they would build."""

    intercepted_binops = frozenset({"*", "**"})
    max_bytes = DEFAULT_MAX_BYTES

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(times, int) and _size(seq) * times > self.max_bytes:
                    raise BudgetExceeded(
                        f"a repetition would build more than {self.max_bytes} characters"
                    )
            return operator.mul(left, right)
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and left.bit_length() * right > _MAX_POWER_BITS
        ):
            raise BudgetExceeded("a power too large to compute")
        return operator.pow(left, right)


_ENVS = {
    autoescape: _Sandbox(
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


def _over(max_bytes: int) -> None:
    raise BudgetExceeded(f"output larger than {max_bytes} characters")


def render(
    source: str,
    context: Mapping[str, Any],
    *,
    part: str,
    html: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> str:
    """Render one template; any failure becomes a TemplateError naming `part`."""
    _ENVS[html].max_bytes = max_bytes
    try:
        out: list[str] = []
        size = 0
        for chunk in _compile(source, html).generate(context):
            size += len(chunk)
            if size > max_bytes:
                _over(max_bytes)
            out.append(chunk)
        text = "".join(out)
    except BudgetExceeded as exc:
        raise BudgetExceeded(f"{part}: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{part}: syntax error at line {exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{part}: {exc.message}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{part}: not allowed: {exc}") from exc
    except Exception as exc:  # a template can raise anything (division by zero, bad filter args)
        raise TemplateError(f"{part}: {type(exc).__name__}: {exc}") from exc
    if "\x00" in text:
        raise TemplateError(f"{part}: the rendered text contains a NUL character")
    return text


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


def check(source: str, *, part: str, html: bool = False) -> None:
    """Raise TemplateError if `source` does not compile (it is not rendered)."""
    try:
        _compile(source, html)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{part}: syntax error at line {exc.lineno}: {exc.message}") from exc
