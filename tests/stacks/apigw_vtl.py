"""A deliberately small evaluator for the API Gateway response templates of stacks/serving.py.

API Gateway runs Apache Velocity (Java); no Velocity engine is a dependency here, so this evaluates exactly the
subset those templates use and refuses anything else (a template that grows a new construct fails the test
until this grows too):

    ## comment                                  whole-line comments
    #set($name = <value>)                        value: 123 | "text with $!refs" | $name | $name.replaceAll('re', 'rep')
                                                 | $input.path('$.Field')
    #set($context.responseOverride.status = $name)
    #if($name.matches('re')) / #elseif(...) / #else / #end
    any other line: text with $name / $!name references

Approximations (documented, accepted for these templates): Java's ``String.matches`` is a full match, as
``re.fullmatch``; Java and Python agree on the regex features used here (classes, ``\\s``, ``\\d``, ``\\xHH``,
groups, alternation, ``(?is)``, lookahead); ``replaceAll``'s ``$1`` becomes ``\\g<1>``. ``$input.path`` reads one
top-level field of the JSON body (null when absent). Velocity's whitespace handling is not modelled: a
directive line produces no output, a text line produces itself and a newline.
"""

from __future__ import annotations

import json
import re
from typing import Any

_REF = r"\$!?(?:input\.path\('\$\.(?P<field>[A-Za-z_]+)'\)|(?P<name>[A-Za-z][A-Za-z0-9_]*))"
_SINGLE = r"'(?P<{0}>[^']*)'"
_DIRECTIVE = re.compile(r"\s*#(?P<word>set|if|elseif|else|end)\b\s*(?:\((?P<args>.*)\))?\s*")


class Unsupported(ValueError):
    """The template uses a construct this evaluator does not model."""


class Template:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    def render(self, body: dict[str, Any]) -> tuple[str, int | None]:
        """(output, $context.responseOverride.status or None) for an integration response body."""
        variables: dict[str, Any] = {}
        override: list[int] = []
        out: list[str] = []
        # stack of (branch taken so far in this #if, currently emitting)
        stack: list[list[bool]] = []

        def active() -> bool:
            return all(frame[1] for frame in stack)

        for line in self.lines:
            if line.lstrip().startswith("##"):
                continue
            match = _DIRECTIVE.fullmatch(line)
            if match is None:
                if line.lstrip().startswith("#"):
                    raise Unsupported(line)
                if active():
                    out.append(self._interpolate(line, variables, body))
                continue
            word, args = match["word"], match["args"]
            if word == "if":
                taken = active() and self._condition(args, variables)
                stack.append([taken, taken])
            elif word == "elseif":
                frame = stack[-1]
                frame[1] = not frame[0] and all(f[1] for f in stack[:-1]) and self._condition(args, variables)
                frame[0] = frame[0] or frame[1]
            elif word == "else":
                frame = stack[-1]
                frame[1] = not frame[0]
                frame[0] = True
            elif word == "end":
                stack.pop()
            elif active():  # set
                target, _, value = (part.strip() for part in args.partition("="))
                result = self._value(value, variables, body)
                if target == "$context.responseOverride.status":
                    if override:
                        raise AssertionError("API Gateway answers 5xx when a template overrides twice")
                    override.append(int(result))
                elif re.fullmatch(r"\$[A-Za-z][A-Za-z0-9_]*", target):
                    if result is not None:  # Velocity leaves the variable as it was when the value is null
                        variables[target[1:]] = result
                else:
                    raise Unsupported(line)
        assert not stack, "unbalanced #if/#end"
        return "\n".join(out), (override[0] if override else None)

    @staticmethod
    def _lookup(match: re.Match, variables: dict[str, Any], body: dict[str, Any]) -> Any:
        if match["field"]:
            return body.get(match["field"])
        return variables.get(match["name"])

    def _interpolate(self, text: str, variables: dict[str, Any], body: dict[str, Any]) -> str:
        def replace(match: re.Match) -> str:
            value = self._lookup(match, variables, body)
            if value is None:
                if match.group(0).startswith("$!"):
                    return ""
                return match.group(0)  # Velocity prints an unset reference as written
            return str(value)
        return re.sub(_REF, replace, text)

    def _value(self, text: str, variables: dict[str, Any], body: dict[str, Any]) -> Any:
        if re.fullmatch(r"\d+", text):
            return int(text)
        if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
            return self._interpolate(text[1:-1], variables, body)
        call = re.fullmatch(r"\$(?P<name>[A-Za-z][A-Za-z0-9_]*)\.replaceAll\(" + _SINGLE.format("re") + r",\s*"
                            + _SINGLE.format("rep") + r"\)", text)
        if call:
            subject = variables.get(call["name"])
            replacement = re.sub(r"\$(\d)", r"\\g<\1>", call["rep"])
            return re.sub(call["re"], replacement, str(subject))
        ref = re.fullmatch(_REF, text)
        if ref:
            return self._lookup(ref, variables, body)
        raise Unsupported(text)

    @staticmethod
    def _condition(text: str, variables: dict[str, Any]) -> bool:
        call = re.fullmatch(r"\$(?P<name>[A-Za-z][A-Za-z0-9_]*)\.matches\(" + _SINGLE.format("re") + r"\)", text)
        if not call:
            raise Unsupported(text)
        subject = variables.get(call["name"])
        return subject is not None and re.fullmatch(call["re"], str(subject)) is not None


def selected(patterns: dict[str, str | None], status: int) -> str:
    """The integration response API Gateway selects for a backend status: the one whose selection pattern
    matches the status code (exactly one may), else the default (no pattern)."""
    matching = [code for code, pattern in patterns.items() if pattern and re.fullmatch(pattern, str(status))]
    assert len(matching) <= 1, f"{status} matches several selection patterns: {matching}"
    if matching:
        return matching[0]
    (default,) = [code for code, pattern in patterns.items() if not pattern]
    return default


def as_json(output: str) -> Any:
    return json.loads(output)
