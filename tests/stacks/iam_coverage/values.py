"""The symbolic values the evaluator computes, and the string-pattern helpers it decides conditions with."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .policies import WILD, glob_overlaps
from .source import ClassInfo


# -- symbolic values ----------------------------------------------------------------------------------------------
class _Atom:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN, NONE = _Atom("UNKNOWN"), _Atom("None")  # any value the analysis cannot tell; Python's None
TRUE, FALSE = _Atom("True"), _Atom("False")


class _Hashed:
    """Values are hashed again and again (contexts are memo keys): each container keeps its hash."""

    def __hash__(self) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash((type(self), *(getattr(self, f) for f in self.__dataclass_fields__)))
            object.__setattr__(self, "_hash", value)
            return value


@dataclass(frozen=True, eq=True)
class DictV(_Hashed):
    items: tuple[tuple[str, frozenset, bool], ...]  # key, values, optional (added by one branch only)
    open: bool = False  # ** of something unknown: other keys may exist

    def get(self, key: str) -> frozenset | None:
        for k, v, _ in self.items:
            if k == key:
                return v
        return None


@dataclass(frozen=True, eq=True)
class ListV(_Hashed):
    elements: frozenset  # a list, set or iterator: any number of these


@dataclass(frozen=True, eq=True)
class TupleV(_Hashed):
    elements: tuple[frozenset, ...]  # a tuple display: its elements by position


@dataclass(frozen=True, eq=True)
class ObjV(_Hashed):
    cls: ClassInfo
    args: tuple[tuple[str, frozenset], ...]  # constructor arguments by parameter (or dataclass field) name

    def __repr__(self) -> str:
        return f"<{self.cls.name} instance>"

    def arg(self, name: str) -> frozenset | None:
        return next((v for k, v in self.args if k == name), None)


@dataclass(frozen=True)
class ClientV:
    service: str  # a botocore client


@dataclass(frozen=True)
class OpV:
    service: str
    operation: str  # a client's method passed on as a value (deployer._names(sm.list_models, ...))


@dataclass(frozen=True)
class RefV:
    target: Any  # Function, ClassInfo or Module
    closure: Any = None  # a nested function: the frozen environment of the function that defines it


@dataclass(frozen=True, eq=True)
class ItemV(_Hashed):
    pk: frozenset  # an item of the ledger read back by its key (STORE_READ): what ITEM_FACTS say it holds
    sk: frozenset


@dataclass(frozen=True, eq=True)
class JsonV(_Hashed):
    value: frozenset  # json.dumps(value), and its .encode(): text whose structure the analysis keeps


for _container in (DictV, ListV, TupleV, ObjV, ItemV, JsonV):  # dataclass wrote its own, uncached __hash__
    _container.__hash__ = _Hashed.__hash__  # type: ignore[method-assign]

Values = frozenset
MAX_ALTERNATIVES = 48
MAX_NESTING = 5  # deeper containers (to_attr's recursive {"L": [...]}) are unknown, so recursion settles


def values(*atoms: Any) -> Values:
    return frozenset(atoms)


def union(*sets: Iterable) -> Values:
    out = frozenset().union(*sets)
    strings_ = [a for a in out if isinstance(a, str)]
    if len(strings_) > MAX_ALTERNATIVES:  # too many spellings to be useful: any string
        out = frozenset(a for a in out if not isinstance(a, str)) | {WILD}
    return out


def nested(vals: Values, level: int = 0) -> Values:
    """The value with containers below MAX_NESTING replaced by unknown."""
    out = set()
    for a in vals:
        if isinstance(a, (DictV, ListV, TupleV, JsonV)) and level >= MAX_NESTING:
            out.add(UNKNOWN)
        elif isinstance(a, DictV):
            out.add(DictV(tuple((k, nested(v, level + 1), o) for k, v, o in a.items), a.open))
        elif isinstance(a, ListV):
            out.add(ListV(nested(a.elements, level + 1)))
        elif isinstance(a, TupleV):
            out.add(TupleV(tuple(nested(e, level + 1) for e in a.elements)))
        elif isinstance(a, JsonV):
            out.add(JsonV(nested(a.value, level + 1)))
        else:
            out.add(a)
    return frozenset(out)


def strings(vals: Values) -> set[str]:
    """The string patterns a value may be (unknown: any string; None and containers: not a string)."""
    out = {a for a in vals if isinstance(a, str)}
    if UNKNOWN in vals:
        out.add(WILD)
    return out


def concat(left: Values, right: Values) -> Values:
    if not left or not right:  # not known yet (a recursion's first pass)
        return frozenset()
    ls, rs = strings(left), strings(right)
    if not ls or not rs:
        return values(UNKNOWN)
    return union({squash(a + b) for a in ls for b in rs})


def squash(pattern: str) -> str:
    return re.sub(WILD + "+", WILD, pattern)


def stringify(vals: Values) -> Values:
    """``str(x)`` / an f-string field: strings as they are, None as 'None', anything else unknown."""
    out = {a for a in vals if isinstance(a, str)} | {a.name for a in vals if a in (NONE, TRUE, FALSE)}
    if any(not isinstance(a, str) and a not in (NONE, TRUE, FALSE) for a in vals):
        out.add(WILD)
    return union(out)


def truthy(atom: Any) -> bool | None:
    """Python's truth of a value (None: either)."""
    if atom is NONE or atom is FALSE:
        return False
    if atom is TRUE:
        return True
    if isinstance(atom, str):
        return True if atom.replace(WILD, "") else None if WILD in atom else False
    if isinstance(atom, (ObjV, RefV, ClientV, OpV, JsonV)):
        return True
    if isinstance(atom, TupleV):
        return bool(atom.elements)
    if isinstance(atom, DictV) and any(not optional for _, _, optional in atom.items):
        return True
    if isinstance(atom, DictV) and not atom.items and not atom.open:
        return False
    return None


def patterns_overlap(a: str, b: str) -> bool:
    """Some string is an instance of both patterns."""
    return glob_overlaps(a.replace("*", WILD).replace(WILD, "*"), b)


def stripped(text: str, prefix: str) -> str | None:
    """``text[len(prefix):]`` for patterns, when ``text`` starts with ``prefix`` (None when it cannot). The
    wildcards of a prefix are taken to stand for the text of the wildcards of ``text`` at the same places (a
    prefix built like the key it strips: f"{folder}{job}/" from f"{folder}{job}/{key}")."""
    if WILD not in prefix:
        head = text.split(WILD, 1)[0]
        if text.startswith(prefix):
            return text[len(prefix):]
        return WILD if WILD in text and prefix.startswith(head) else None
    t_parts, p_parts = text.split(WILD), prefix.split(WILD)
    if len(t_parts) < len(p_parts) or t_parts[:len(p_parts) - 1] != p_parts[:-1]:
        return WILD if patterns_overlap(prefix + WILD, text) else None
    rest = t_parts[len(p_parts) - 1]
    if not rest.startswith(p_parts[-1]):
        return None
    return WILD.join([rest[len(p_parts[-1]):], *t_parts[len(p_parts):]])


def starts_with(text: Any, prefix: Any) -> bool | None:
    if not isinstance(text, str) or not isinstance(prefix, str):
        return None
    if WILD not in text and WILD not in prefix:
        return text.startswith(prefix)
    if WILD not in prefix and text.split(WILD, 1)[0].startswith(prefix):
        return True
    return None if patterns_overlap(prefix + WILD, text) else False


def ends_with(text: Any, suffix: Any) -> bool | None:
    if not isinstance(text, str) or not isinstance(suffix, str):
        return None
    return starts_with(text[::-1], suffix[::-1])


def equal(a: Any, b: Any) -> bool | None:
    if a is UNKNOWN or b is UNKNOWN:
        return None
    if a in (NONE, TRUE, FALSE) or b in (NONE, TRUE, FALSE):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        if WILD not in a and WILD not in b:
            return a == b
        return None if patterns_overlap(a, b) else False
    return None
