"""Symbolic, context-sensitive evaluation of a handler's code: the client calls it makes, with their parameters."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from .policies import AnalysisError, WILD
from .source import ClassInfo, Code, Function, FunctionNode, Module
from .values import (
    ClientV, DictV, FALSE, ItemV, JsonV, ListV, MAX_ALTERNATIVES, NONE, ObjV, OpV, RefV, TRUE, TupleV, UNKNOWN,
    Values, concat, ends_with, equal, nested, patterns_overlap, starts_with, stringify, strings, stripped,
    truthy, union, values)
from .facts import STORE_READ


# -- the evaluator ------------------------------------------------------------------------------------------------
BUILTIN_PASSTHROUGH = {"tuple", "list", "sorted", "set", "frozenset", "reversed"}
STRING_METHODS_SAME = {"strip", "lstrip", "rstrip", "lower", "upper", "casefold"}
# Methods of dicts, lists and strings: called on a value the analysis cannot tell, they are taken to be those (data
# from events, AWS answers and the ledger), never an analysed class's method of the same name (Ledger.get).
DATA_METHODS = {"get", "items", "keys", "values", "update", "pop", "setdefault", "copy", "append", "extend", "add",
                "remove", "discard", "clear", "index", "count", "sort", "split", "rsplit", "partition", "rpartition",
                "strip", "lstrip", "rstrip", "lower", "upper", "startswith", "endswith", "encode", "decode", "join",
                "format", "replace", "read", "close", "hexdigest", "timestamp", "isoformat", "strftime", "find"}
MAX_DEPTH = 400  # a recursion guard only: cycles end through the evaluator's active set
# Keys of an environment (a function's parameters -> values) that are not parameters:
CLOSURE = "\x00closure"  # a nested function: the frozen environment of the function that defines it
LOCALS = "\x00locals"  # names bound by a comprehension, loop or lambda: they hide the function's own bindings
NO_CONTEXT = "\x00none"  # names the environment does not bind resolve as without a context
NARROWED = "\x00narrowed"  # (ast.dump(expr), values): what a name or attribute is inside a branch that tested it


class Evaluator:
    """Symbolic, context-sensitive evaluation of one handler's code (see the package docstring).

    ``env`` is a function's context: its parameters' values at one call (None: no context, each parameter
    unknown). Visiting a function in a context evaluates every call in it, so the
    functions it calls are visited in theirs: the client operations met on the way are recorded with their
    arguments as that path computes them."""

    def __init__(self, code: Code, reachable: list[Function], environment: Mapping[str, str],
                 facts: Mapping[str, Iterable[str]], fact_functions: Mapping[str, Function],
                 item_facts: list[tuple[Function, dict[str, Function]]], facts_used: set[str] | None = None) -> None:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 50000))
        self.code = code
        self.reachable = reachable
        # os.environ: the function's environment variables, as the template sets them
        self.environment = DictV(tuple((k, values(v), False) for k, v in sorted(environment.items())))
        self.facts = {k: frozenset(v) for k, v in facts.items()}
        self.fact_functions = dict(fact_functions)
        self.item_facts = item_facts
        self.facts_used = facts_used if facts_used is not None else set()  # FACTS keys, ITEM_FACTS rows applied
        self._locals: dict[int, dict[str, list[tuple[str, Any]]]] = {}
        services = {n.args[0].value for fn in reachable for n in fn.own_nodes()
                    if isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Constant)
                    and n.args[0].value in known_services()}
        self.operation_names = {name for s in services for name in operations(s)}
        # Recursion (Ledger.update -> claim -> update, to_attr -> to_attr) is solved by iteration: a value still
        # being computed reads as what the previous pass found (nothing, at first), and passes repeat until no
        # value changes (values only grow, and are capped, so this ends).
        self._previous: dict[Any, Values] = {}
        self._memo: dict[Any, Values] = {}
        self._active: set[Any] = set()
        self._unfinished = False
        self.calls: dict[tuple, Call] = {}
        self.gaps: set[str] = set()
        self._visited: set[tuple] = set()
        self._visited_functions: set[int] = set()
        # Branches (the ids of their statements) taken in some visit, and ruled out by the context in some visit.
        self.live_branches: set[int] = set()
        self.pruned_branches: set[int] = set()

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, entries: list[Function]) -> tuple[list[Call], list[str], set[str]]:
        """Visit the entry points without a context (the functions they call in theirs): the calls found, the gaps,
        and the functions visited."""

        def work() -> tuple[list[Call], list[str], set[str]]:
            self.calls, self.gaps, self._visited, self._visited_functions = {}, set(), set(), set()
            for fn in entries:
                self.visit(fn, None, 0)
            visited = {fn.key for fn in self.reachable if id(fn) in self._visited_functions}
            return list(self.calls.values()), sorted(self.gaps), visited

        return self.solve(work)

    def solve(self, work: Any, passes: int = 10) -> Any:
        """Run ``work`` (which evaluates what it needs) until a pass changes no value; return its last result."""
        for _ in range(passes):
            self._memo = {}
            self._unfinished = False
            result = work()
            settled = all(self._previous.get(k, frozenset()) == v for k, v in self._memo.items())
            # A value a pass did not reach keeps the last one found (a pass reaches what the values before it let it).
            self._previous = {**self._previous, **self._memo}
            if settled and not self._unfinished:
                return result
        raise AnalysisError(f"values did not settle in {passes} passes")

    def _solved(self, key: Any, depth: int, compute: Any) -> Values:
        if key in self._memo:
            return self._memo[key]
        if key in self._active:
            return self._previous.get(key, frozenset())
        if depth > MAX_DEPTH:  # too deep this time: what a shallower evaluation found in the previous pass
            if key not in self._previous:
                self._unfinished = True
            return self._previous.get(key, frozenset())
        self._active.add(key)
        try:
            result = compute()
        finally:
            self._active.discard(key)
        self._memo[key] = result
        return result

    def visit(self, fn: Function, env: dict | None, depth: int) -> None:
        """Evaluate every call in ``fn`` in context ``env`` (once per context and pass)."""
        key = (id(fn), _frozen(env))
        if key in self._visited:
            return
        if depth > MAX_DEPTH:
            raise AnalysisError(f"{fn.key}: calls nest deeper than {MAX_DEPTH}")
        self._visited.add(key)
        self._visited_functions.add(id(fn))
        defaults = [] if isinstance(fn.node, ast.Module) else [
            d for d in fn.node.args.defaults + fn.node.args.kw_defaults if d is not None]
        self._walk(fn, [*fn.node.body, *defaults], env, depth + 1)

    def _walk(self, fn: Function, nodes: list[ast.AST], env: dict | None, depth: int) -> None:
        nodes = self._until_exit(fn, nodes, env, depth)
        self.live_branches.update(id(n) for n in nodes)
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue  # functions of their own, visited when called
            if isinstance(node, (ast.If, ast.IfExp)):  # a branch the context rules out is not taken
                taken = self.truth(fn, node.test, env, depth)
                body, orelse = (node.body, node.orelse) if isinstance(node, ast.If) else ([node.body], [node.orelse])
                stack.append(node.test)
                for branch, live, positive in ((body, taken is not False, True), (orelse, taken is not True, False)):
                    (self.live_branches if live else self.pruned_branches).update(id(n) for n in branch)
                    if live:
                        self._walk(fn, branch, self.narrowed(fn, node.test, env, depth, positive, branch), depth)
                continue
            if isinstance(node, ast.Lambda):  # its body runs (if at all) with its parameters unknown
                args = node.args
                hidden = {a.arg: values(UNKNOWN) for a in args.posonlyargs + args.args + args.kwonlyargs}
                self._walk(fn, [node.body], self._scope(env, hidden), depth)
                continue
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                self.eval(fn, node, env, depth)
                continue
            if isinstance(node, ast.Call):
                self.eval(fn, node, env, depth)
            elif isinstance(node, ast.Attribute) and node.attr in self.operation_names:
                base = self.eval(fn, node.value, env, depth)
                if UNKNOWN in base and not any(isinstance(a, ClientV) for a in base):
                    self.gaps.add(f"{fn.location(node)}: .{node.attr} on a receiver the analysis cannot resolve")
            stack.extend(ast.iter_child_nodes(node))

    def _until_exit(self, fn: Function, nodes: list[ast.AST], env: dict | None, depth: int) -> list[ast.AST]:
        """A block's statements up to an ``if`` the context decides whose taken side ends in ``return`` or ``raise``
        (``if not enabled: return``): the statements after it do not run in this context."""
        for index, node in enumerate(nodes):
            if not isinstance(node, ast.If):
                continue
            rest = [n for n in nodes[index + 1:] if isinstance(n, ast.stmt)]
            if not rest:
                break
            taken = self.truth(fn, node.test, env, depth)
            side = node.body if taken is True else node.orelse if taken is False else None
            if side and isinstance(side[-1], (ast.Return, ast.Raise)):
                self.pruned_branches.update(id(n) for n in rest)
                return [n for n in nodes if n not in rest]
        return nodes

    def record(self, fn: Function, node: ast.Call, service: str, operation: str, env: dict | None,
               depth: int) -> None:
        location = fn.location(node)
        if operation in ("get_paginator", "get_waiter"):
            raise AnalysisError(f"{location}: {operation} is not modelled by the analyzer")
        if operation not in operations(service):
            return  # client.meta, client.exceptions, ...
        call = Call(service, operations(service)[operation], self.keywords(fn, node, env, depth), location, fn.key)
        self.calls[(call.name, call.location, call.kwargs)] = call

    # -- names -------------------------------------------------------------------------------------------------
    def assignments(self, fn: Function) -> dict[str, list[tuple[str, Any, tuple]]]:
        """name -> [(kind, payload, guards)]: 'value' expr, 'unpack' (expr, index, length), 'iter' expr (a for
        target), 'aug' expr, 'setitem' (key, value), 'append'/'extend' expr, 'unknown' (a target not split); guards:
        the (test, holds, branch) of the if statements the binding is in."""
        if id(fn) in self._locals:
            return self._locals[id(fn)]
        found: dict[str, list[tuple[str, Any, tuple]]] = defaultdict(list)

        def bind(target: ast.AST, kind: str, payload: Any, guards: tuple) -> None:
            if isinstance(target, ast.Name):
                found[target.id].append((kind, payload, guards))
            elif isinstance(target, (ast.Tuple, ast.List)):
                for index, element in enumerate(target.elts):
                    simple = kind == "value" and not any(isinstance(e, ast.Starred) for e in target.elts)
                    bind(element.value if isinstance(element, ast.Starred) else element,
                         "unpack" if simple else "unknown", (payload, index, len(target.elts)) if simple else None,
                         guards)
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                found[target.value.id].append(("setitem", (target.slice, payload), guards))

        for node, guards in _guarded_nodes(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target, "value", node.value, guards)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                bind(node.target, "value", node.value, guards)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                found[node.target.id].append(("aug", node.value, guards))
            elif isinstance(node, ast.NamedExpr):
                bind(node.target, "value", node.value, guards)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                if isinstance(node.target, ast.Name):
                    found[node.target.id].append(("iter", node.iter, guards))
                else:
                    bind(node.target, "unknown", None, guards)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                bind(node.optional_vars, "unknown", None, guards)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                found[node.name].append(("unknown", None, guards))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and isinstance(node.func.value, ast.Name) and node.func.attr in ("append", "extend", "add")
                  and node.args):
                kind = "append" if node.func.attr != "extend" else "extend"
                found[node.func.value.id].append((kind, node.args[0], guards))
        self._locals[id(fn)] = found
        return found

    def guarded(self, fn: Function, guards: tuple, env: dict | None, depth: int) -> dict | None | bool:
        """The context of a statement inside if statements (False: one of them rules it out)."""
        for test, holds, branch in guards:
            if self.truth(fn, test, env, depth) is (not holds):
                return False
            env = self.narrowed(fn, test, env, depth, holds, list(branch))
        return env

    def name(self, fn: Function, name: str, env: dict | None, depth: int) -> Values:
        local = self.assignments(fn)
        rebound = name in local and any(kind in ("value", "unpack", "iter", "aug", "unknown")
                                        for kind, _, _ in local[name])
        if env is not None and name in env and (not rebound or name in env.get(LOCALS, ())):
            return env[name]
        if rebound:  # a local, or a parameter assigned again (env = os.environ if env is None else env)
            initial = env.get(name, frozenset()) if _has_context(env) else (
                values(UNKNOWN) if name in fn.params else frozenset())
            if name in _declared_global(fn) and name in self.assignments(fn.module.top):
                initial = union(initial, self.name(fn.module.top, name, None, depth))
            plain = _plain(env)
            return union(initial, self._solved(("name", id(fn), name, _frozen(plain)), depth,
                                               lambda: self._local(fn, name, local[name], plain, depth)))
        if name in fn.params:  # a parameter the context does not bind, or without a context
            return values(UNKNOWN)
        scope, scope_env = fn, env
        while scope is not None:  # nested functions (with the context that defines them), then enclosing scopes
            if scope is not fn and (name in scope.params or name in self.assignments(scope)):
                return self.name(scope, name, scope_env, depth)
            if name in scope.nested:
                return values(RefV(scope.nested[name], _frozen(_plain(scope_env))))
            scope_env = _enclosing(scope_env)
            scope = scope.parent
        targets = self.code.lookup(fn.module.top, name)
        if targets:
            return values(*(RefV(t) for t in targets))
        if fn is not fn.module.top and name in self.assignments(fn.module.top):
            return self.name(fn.module.top, name, None, depth)
        return values(UNKNOWN)

    def _local(self, fn: Function, name: str, entries: list, env: dict | None, depth: int) -> Values:
        out: set = set()
        contexts = [self.guarded(fn, guards, env, depth) for _, _, guards in entries]
        entries = [(kind, payload, context) for (kind, payload, _), context in zip(entries, contexts)
                   if context is not False]
        for kind, payload, env in entries:
            if kind == "value":
                out |= self.eval(fn, payload, env, depth)
            elif kind == "unpack":
                value, index, length = payload
                for atom in self.eval(fn, value, env, depth):
                    if isinstance(atom, TupleV) and len(atom.elements) == length:
                        out |= atom.elements[index]
                    elif atom is not NONE:  # unpacking None raises: the code checks first
                        out |= self.elements(values(atom))
            elif kind == "iter":
                out |= self.elements(self.eval(fn, payload, env, depth))
            elif kind in ("aug", "unknown"):
                out.add(UNKNOWN)
        for kind, payload, env in entries:  # mutations of what was bound: d[k] = v, l.append(v), l.extend(vs)
            if kind == "setitem":
                keys = strings(self.eval(fn, payload[0], env, depth))
                added = self.eval(fn, payload[1], env, depth)
                out = {DictV(a.items + tuple((k, added, True) for k in keys), a.open) if isinstance(a, DictV) else a
                       for a in out}
            elif kind in ("append", "extend"):
                added = self.eval(fn, payload, env, depth)
                added = self.elements(added) if kind == "extend" else added
                out = {ListV(union(a.elements, added)) if isinstance(a, ListV) else a for a in out}
        return nested(union(out))

    def bind_arguments(self, fn: Function, call: ast.Call, caller: Function, env: dict | None, depth: int,
                       *, receiver: Values | None, closure: Any = None) -> dict[str, Values]:
        params = list(fn.params)
        bound: dict[str, Any] = {}
        if fn.cls is not None and params and not _is_static(fn):
            bound[params[0]] = receiver if receiver is not None else values(UNKNOWN)
            params = params[1:]
        positional = [p for p in params if p not in _kwonly(fn)]
        for index, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                spread = self.eval(caller, arg.value, env, depth)
                for offset, p in enumerate(positional[index:]):
                    tuples = [a for a in spread if isinstance(a, TupleV)]
                    exact = tuples and len(tuples) == len(spread) and all(offset < len(t.elements) for t in tuples)
                    bound.setdefault(p, union(*(t.elements[offset] for t in tuples)) if exact else values(UNKNOWN))
                break
            if index < len(positional):
                bound[positional[index]] = self.eval(caller, arg, env, depth)
        for keyword in call.keywords:
            if keyword.arg is None:
                spreads = self.eval(caller, keyword.value, env, depth)
                for atom in spreads:
                    if isinstance(atom, DictV):
                        for k, v, _ in atom.items:
                            if k in params:
                                bound[k] = union(bound.get(k, frozenset()), v)
                if not all(isinstance(a, DictV) and not a.open for a in spreads):
                    for p in params:
                        bound.setdefault(p, values(UNKNOWN))
            elif keyword.arg in params:
                bound[keyword.arg] = self.eval(caller, keyword.value, env, depth)
        for p in params:
            if p not in bound:
                default = fn.default(p)
                bound[p] = self.eval(fn, default, None, depth) if default is not None else values(UNKNOWN)
        if fn.parent is not None and closure is not None:
            bound[CLOSURE] = closure
        return bound

    # -- expressions -----------------------------------------------------------------------------------------------
    def eval(self, fn: Function, node: ast.AST | None, env: dict | None = None, depth: int = 0) -> Values:
        if node is None:
            return values(NONE)
        if depth > MAX_DEPTH:
            return values(UNKNOWN)
        depth += 1
        if env is not None and NARROWED in env and isinstance(node, (ast.Name, ast.Attribute)):
            narrowed = dict(env[NARROWED]).get(ast.dump(node))
            if narrowed is not None:
                return narrowed
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, bool):
                return values({None: NONE, True: TRUE, False: FALSE}[node.value])
            return values(node.value) if isinstance(node.value, str) else values(UNKNOWN)
        if isinstance(node, ast.Compare) or isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            taken = self.truth(fn, node, env, depth)
            return values(TRUE) if taken is True else values(FALSE) if taken is False else values(TRUE, FALSE)
        if isinstance(node, ast.JoinedStr):
            out = values("")
            for part in node.values:
                piece = (values(part.value) if isinstance(part, ast.Constant)
                         else stringify(self.eval(fn, part.value, env, depth)))
                out = concat(out, piece)
            return out
        if isinstance(node, ast.Name):
            return self.name(fn, node.id, env, depth)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.eval(fn, node.left, env, depth), self.eval(fn, node.right, env, depth)
            sequences = [a for a in left | right if isinstance(a, (ListV, TupleV))]
            if sequences:
                return values(ListV(self.elements(frozenset(sequences))))
            return concat(left, right)
        if isinstance(node, ast.BoolOp):
            return self._bool_op(fn, node, env, depth)
        if isinstance(node, ast.IfExp):
            taken = self.truth(fn, node.test, env, depth)
            return union(
                self.eval(fn, node.body, self.narrowed(fn, node.test, env, depth, True), depth)
                if taken is not False else (),
                self.eval(fn, node.orelse, self.narrowed(fn, node.test, env, depth, False), depth)
                if taken is not True else ())
        if isinstance(node, ast.Dict):
            items: list[tuple[str, Values, bool]] = []
            is_open = False
            for key, value in zip(node.keys, node.values):
                if key is None:
                    for atom in self.eval(fn, value, env, depth):
                        if isinstance(atom, DictV):
                            items += atom.items
                            is_open |= atom.open
                        else:
                            is_open = True
                    continue
                evaluated = self.eval(fn, value, env, depth)
                keys = strings(self.eval(fn, key, env, depth))
                is_open |= WILD in "".join(keys)
                items += [(k, evaluated, False) for k in keys if WILD not in k]
            return nested(values(DictV(tuple(items), is_open)))
        if isinstance(node, ast.Tuple) and not any(isinstance(e, ast.Starred) for e in node.elts):
            return nested(values(TupleV(tuple(self.eval(fn, e, env, depth) for e in node.elts))))
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            elements: set = set()
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    elements |= self.elements(self.eval(fn, element.value, env, depth))
                else:
                    elements |= self.eval(fn, element, env, depth)
            return nested(values(ListV(union(elements))))
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            bound: dict[str, Values] = {}
            for generator in node.generators:
                items_ = self.elements(self.eval(fn, generator.iter, self._scope(env, bound), depth))
                if isinstance(generator.target, ast.Name):
                    bound[generator.target.id] = items_
                else:
                    bound.update({n.id: values(UNKNOWN) for n in ast.walk(generator.target) if isinstance(n, ast.Name)})
                for condition in generator.ifs:
                    self.eval(fn, condition, self._scope(env, bound), depth)
            scope = self._scope(env, bound)
            if isinstance(node, ast.DictComp):
                self.eval(fn, node.key, scope, depth)
                self.eval(fn, node.value, scope, depth)
                return values(DictV((), open=True))
            return nested(values(ListV(self.eval(fn, node.elt, scope, depth))))
        if isinstance(node, ast.Attribute):
            if self._external(fn, node) == "os.environ":
                return values(self.environment)
            return self.attribute(fn, self.eval(fn, node.value, env, depth), node.attr, depth)
        if isinstance(node, ast.Subscript):
            return self.subscript(fn, node, env, depth)
        if isinstance(node, ast.Call):
            return self.call(fn, node, env, depth)
        if isinstance(node, ast.Starred):
            return self.eval(fn, node.value, env, depth)
        return values(UNKNOWN)

    @staticmethod
    def _scope(env: dict | None, bound: Mapping[str, Values]) -> dict:
        """A comprehension's, loop's or lambda's names over a function's context."""
        base = {NO_CONTEXT: True} if env is None else dict(env)
        base[LOCALS] = frozenset(base.get(LOCALS, frozenset()) | set(bound))
        return {**base, **bound}

    def _bool_op(self, fn: Function, node: ast.BoolOp, env: dict | None, depth: int) -> Values:
        """``a or b``: b only where a may be falsy (and the other way round for ``and``)."""
        out: set = set()
        stop_if = True if isinstance(node.op, ast.Or) else False
        for index, operand in enumerate(node.values):
            vals = self.eval(fn, operand, env, depth)
            if index == len(node.values) - 1:
                out |= vals
                break
            truths = {a: truthy(a) for a in vals}
            out |= {a for a, t in truths.items() if t is not (not stop_if)}  # what ends the expression here
            if vals and all(t is stop_if for t in truths.values()):
                break
        return union(out)

    def truth(self, fn: Function, node: ast.AST, env: dict | None, depth: int) -> bool | None:
        """Whether a condition holds in this context (None: it may or may not)."""
        found = self._solved(("truth", id(node), _frozen(env)), depth,
                             lambda: values(self._truth(fn, node, env, depth)))
        return next(iter(found)) if len(found) == 1 else None

    def _truth(self, fn: Function, node: ast.AST, env: dict | None, depth: int) -> bool | None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.truth(fn, node.operand, env, depth)
            return None if inner is None else not inner
        if isinstance(node, ast.BoolOp):
            parts = [self.truth(fn, v, env, depth) for v in node.values]
            if isinstance(node.op, ast.And):
                return False if False in parts else True if all(p is True for p in parts) else None
            return True if True in parts else False if all(p is False for p in parts) else None
        outcomes: set[bool | None] = set()
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            op = node.ops[0]
            left = self.eval(fn, node.left, env, depth)
            right = self.eval(fn, node.comparators[0], env, depth)
            if isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
                if isinstance(op, (ast.Is, ast.IsNot)) and right != {NONE}:
                    return None
                outcomes = {equal(a, b) for a in left for b in right}
                if isinstance(op, (ast.NotEq, ast.IsNot)):
                    outcomes = {None if o is None else not o for o in outcomes}
            elif isinstance(op, (ast.In, ast.NotIn)):
                members = [m for a in right for m in (self.elements(values(a)) if isinstance(a, (ListV, TupleV))
                                                        else {UNKNOWN})]
                outcomes = {True if any(equal(a, m) for m in members) else
                            None if any(equal(a, m) is None for m in members) else False for a in left}
                if isinstance(op, ast.NotIn):
                    outcomes = {None if o is None else not o for o in outcomes}
            else:
                return None
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith"
              and len(node.args) == 1 and not node.keywords):
            texts = self.eval(fn, node.func.value, env, depth)
            prefixes = self.eval(fn, node.args[0], env, depth)
            outcomes = {starts_with(t, p) for t in texts for p in prefixes}
        else:
            outcomes = {truthy(a) for a in self.eval(fn, node, env, depth)}
        return outcomes.pop() if len(outcomes) == 1 else None

    def narrowed(self, fn: Function, test: ast.AST, env: dict | None, depth: int, positive: bool,
                 branch: list[ast.stmt] | None = None) -> dict | None:
        """The context inside a branch that ``test`` (not ``x``, ``x is None``, ``a and b`` of those) leads to, for a
        name or attribute the branch does not assign: ``[obj.raw_key] if obj.raw_key else []`` holds no None."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self.narrowed(fn, test.operand, env, depth, not positive, branch)
        if isinstance(test, ast.BoolOp):
            if isinstance(test.op, ast.And) == positive:  # every operand holds (and) / none does (or)
                for operand in test.values:
                    env = self.narrowed(fn, operand, env, depth, positive, branch)
            return env
        op = test.ops[0] if isinstance(test, ast.Compare) and len(test.ops) == 1 else None
        if isinstance(op, (ast.Is, ast.IsNot)) and isinstance(test.comparators[0], ast.Constant) \
                and test.comparators[0].value is None:
            target, keep = test.left, (lambda a: (a is NONE) == (positive == isinstance(op, ast.Is)))
        elif isinstance(test, (ast.Name, ast.Attribute)):
            target, keep = test, (lambda a: truthy(a) is not (not positive))
        elif (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "startswith"
              and len(test.args) == 1 and not test.keywords):
            prefixes = self.eval(fn, test.args[0], env, depth)
            target = test.func.value
            keep = (lambda a: any(starts_with(a, p) is not (not positive) for p in prefixes))
        else:
            return env
        root = target
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name) or any(root.id in _assigned_in(s) for s in branch or []):
            return env
        found = self.eval(fn, target, env, depth)
        kept = frozenset(a for a in found if keep(a))
        if not kept or kept == found:
            return env
        new = dict(env) if env is not None else {NO_CONTEXT: True}
        new[NARROWED] = tuple(sorted({**dict(new.get(NARROWED, ())), ast.dump(target): kept}.items()))
        return new

    def elements(self, vals: Values) -> Values:
        out: set = set()
        for atom in vals:
            if isinstance(atom, ListV):
                out |= atom.elements
            elif isinstance(atom, TupleV):
                out |= union(*atom.elements)
            elif isinstance(atom, str) and WILD not in atom:
                out.add(WILD)  # characters of a string: never a resource
            elif atom is not NONE:  # iterating None raises: the code checks first
                out.add(UNKNOWN)
        return union(out)

    def fact(self, key: str, result: Values, depth: int) -> Values:
        """An unknown read of a documented key is what FACTS, the environment or the event rules say it holds."""
        if UNKNOWN not in result:
            return result
        if key in self.facts:
            return union(result - {UNKNOWN}, self.facts[key])
        if key in self.fact_functions:
            self.facts_used.add(key)
            return union(result - {UNKNOWN}, self.returns(self.fact_functions[key], {}, depth))
        return result

    def item_attribute(self, item: ItemV, attr: str, depth: int) -> Values:
        """What ITEM_FACTS say an attribute of a ledger item holds (unknown when they say nothing about it)."""
        out: set = set()
        for index, (key, attributes) in enumerate(self.item_facts):
            for atom in self.returns(key, {}, depth):
                if (attr in attributes and isinstance(atom, TupleV) and len(atom.elements) == 2 and all(
                        any(patterns_overlap(a, b) for a in strings(fact) for b in strings(read))
                        for fact, read in zip(atom.elements, (item.pk, item.sk)))):
                    self.facts_used.add(f"ITEM_FACTS[{index}]")
                    out |= self.returns(attributes[attr], {}, depth)
        return union(out) if out else values(UNKNOWN)

    def attribute(self, fn: Function, base: Values, attr: str, depth: int) -> Values:
        out: set = set()
        for atom in base:
            if isinstance(atom, RefV):
                target = atom.target
                if isinstance(target, Module):
                    out |= self.name(target.top, attr, None, depth)
                elif isinstance(target, ClassInfo) and attr in target.methods:
                    out.add(RefV(target.methods[attr]))
                else:
                    out.add(UNKNOWN)
            elif isinstance(atom, ObjV):
                out |= self.member(atom.cls, atom, attr, depth)
            elif isinstance(atom, ClientV):
                out.add(OpV(atom.service, attr))
            elif atom is UNKNOWN:
                out |= self.member(None, UNKNOWN, attr, depth)
            # dicts, lists, strings and None have no attributes the code reads
        if base and not out:
            out.add(UNKNOWN)
        return self.fact(attr, union(out), depth)

    def member(self, cls: ClassInfo | None, obj: Any, attr: str, depth: int) -> Values:
        """An attribute of an instance: a dataclass field, a property, or what its methods assign to self.attr.
        For an instance of unknown class, every analysed class's member of that name (conservative)."""
        classes = [cls] if cls is not None else [c for m in self.code.modules.values() for c in m.classes.values()]
        receiver = values(obj)
        out: set = set()
        for c in classes:
            if isinstance(obj, ObjV) and c.is_dataclass and attr in dict(c.fields):
                given = obj.arg(attr)
                out |= given if given is not None else self.eval(c.module.top, dict(c.fields)[attr], None, depth)
                continue
            method = c.methods.get(attr)
            if method is not None:
                if method.is_property:
                    bound = {method.params[0]: receiver}
                    self.visit(method, bound, depth)
                    out |= self.returns(method, bound, depth)
                else:
                    out.add(RefV(method))
                continue
            for method, value in _self_assignments(c).get(attr, []):
                env = None
                if isinstance(obj, ObjV) and method.name.endswith("__init__"):
                    env = {"self": receiver, **dict(obj.args)}
                out |= self.eval(method, value, env, depth)
        return union(out) if out else values(UNKNOWN)

    def subscript(self, fn: Function, node: ast.Subscript, env: dict | None, depth: int) -> Values:
        base = self.eval(fn, node.value, env, depth)
        if isinstance(node.slice, ast.Slice):
            lower = node.slice.lower
            if (isinstance(lower, ast.Call) and isinstance(lower.func, ast.Name) and lower.func.id == "len"
                    and node.slice.upper is None and lower.args):  # text[len(prefix):]
                prefixes = strings(self.eval(fn, lower.args[0], env, depth))
                if not prefixes:
                    return frozenset()
                # Only where the text may start with the prefix: the code guards these slices with startswith.
                out = {s for t in strings(base) for p in prefixes for s in [stripped(t, p)] if s is not None}
                return union(out) if out else values(UNKNOWN)
            return values(*(ListV(self.elements(values(a))) for a in base if isinstance(a, (ListV, TupleV)))
                          ) or values(UNKNOWN)
        index = node.slice
        if (isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub)
                and isinstance(index.operand, ast.Constant)):
            position: int | None = -index.operand.value
        else:
            position = index.value if isinstance(index, ast.Constant) and isinstance(index.value, int) else None
        if position is not None:
            out: set = set()
            for atom in base:
                if isinstance(atom, TupleV) and -len(atom.elements) <= position < len(atom.elements):
                    out |= atom.elements[position]
                elif isinstance(atom, (ListV, TupleV)):
                    out |= self.elements(values(atom))
                elif atom is UNKNOWN or isinstance(atom, DictV):
                    out.add(UNKNOWN)
            return union(out)
        return self.item(base, self.eval(fn, index, env, depth), depth)

    def item(self, base: Values, keys: Values, depth: int) -> Values:
        if not keys:  # the key is not known yet (a recursion's first pass)
            return frozenset()
        out: set = set()
        key_strings = {k for k in keys if isinstance(k, str)}
        for atom in base:
            if isinstance(atom, DictV):
                for k in key_strings or {WILD}:
                    found = atom.get(k) if WILD not in k else union(*(v for _, v, _ in atom.items))
                    out |= found if found is not None else {UNKNOWN} if atom.open or WILD in k else set()
            elif isinstance(atom, (ListV, TupleV)):
                out |= self.elements(values(atom))
            elif isinstance(atom, ItemV):
                for k in key_strings or {WILD}:
                    out |= self.item_attribute(atom, k, depth)
            elif atom is UNKNOWN:
                out.add(UNKNOWN)
            # None, strings and instances: not subscripted where the code runs (it checks first)
        result = union(out)
        for k in key_strings:
            result = self.fact(k, result, depth)
        return result

    def call(self, fn: Function, node: ast.Call, env: dict | None, depth: int) -> Values:
        func = node.func
        analysed = False
        out: set = set()
        if isinstance(func, ast.Attribute):
            external = self._external(fn, func)
            if external is not None:
                return self._external_call(fn, external, node, env, depth)
            receiver = self.eval(fn, func.value, env, depth)
            method = func.attr
            if method == "create_client" and node.args:  # botocore/boto3 session: a client of that service
                return values(*(ClientV(s) for s in strings(self.eval(fn, node.args[0], env, depth))
                                if WILD not in s)) or values(UNKNOWN)
            plain = frozenset(a for a in receiver if not isinstance(a, (RefV, ObjV, ClientV)))
            if plain:
                out |= self.builtin_method(fn, plain, method, node, env, depth)
            if UNKNOWN in receiver and method not in DATA_METHODS:
                for target in self.code.methods_named(method):  # an instance of some analysed class
                    if not target.is_property:
                        analysed = True
                        out |= self.apply(fn, target, node, env, depth, receiver=values(UNKNOWN))
            for atom in receiver:
                if isinstance(atom, ClientV):
                    self.record(fn, node, atom.service, method, env, depth)
                    out.add(UNKNOWN)  # an AWS answer
                elif isinstance(atom, (RefV, ObjV)):
                    analysed = True
                    out |= self.invoke(fn, atom, method, node, env, depth)
        else:
            callee = self.eval(fn, func, env, depth)
            if not callee:  # not known yet (a recursion's first pass)
                return frozenset()
            analysed = any(isinstance(a, RefV) for a in callee)
            if isinstance(func, ast.Name) and not any(isinstance(a, (RefV, OpV)) for a in callee):
                out |= self._builtin_call(fn, func.id, node, env, depth)
            else:
                out |= self.call_value(fn, callee, node, env, depth)
        if not analysed:  # a call the analysis does not enter still evaluates its arguments (calls in them)
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.eval(fn, arg, env, depth)
        return union(out)

    def _builtin_call(self, fn: Function, name: str, node: ast.Call, env: dict | None, depth: int) -> Values:
        args = node.args
        if name == "str" and args:
            return stringify(self.eval(fn, args[0], env, depth))
        if name in BUILTIN_PASSTHROUGH:
            if not args:
                return values(ListV(frozenset()))
            return values(ListV(self.elements(self.eval(fn, args[0], env, depth))))
        if name == "dict":
            return values(DictV((), open=bool(args or node.keywords)))
        return values(UNKNOWN)

    def _external(self, fn: Function, func: ast.Attribute) -> str | None:
        """``json.dumps`` and the like: a function of a module outside the analysed code."""
        if isinstance(func.value, ast.Name) and func.value.id in fn.module.imports:
            target, symbol = fn.module.imports[func.value.id]
            if symbol is None and target not in self.code.modules:
                return f"{target}.{func.attr}"
        return None

    def _external_call(self, fn: Function, name: str, node: ast.Call, env: dict | None, depth: int) -> Values:
        if name == "json.dumps" and node.args:
            return values(JsonV(self.eval(fn, node.args[0], env, depth)))
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            self.eval(fn, arg, env, depth)
        return values(UNKNOWN)

    def builtin_method(self, fn: Function, receiver: Values, method: str, node: ast.Call, env: dict | None,
                       depth: int) -> Values:
        """dict.get, str.split and the like on values that are not instances of analysed classes."""
        args = node.args
        if method == "get" and args:
            keys = self.eval(fn, args[0], env, depth)
            default = self.eval(fn, args[1], env, depth) if len(args) > 1 else values(NONE)
            got = self.item(receiver, keys, depth)

            def may_lack(atom: Any) -> bool:  # then get answers its default
                if isinstance(atom, DictV):
                    return any(atom.get(k) is None or any(o for key, _, o in atom.items if key == k)
                               for k in strings(keys))
                return atom is UNKNOWN or isinstance(atom, ItemV)

            return union(got, default if any(may_lack(a) for a in receiver) else ())
        if method in ("split", "rsplit"):
            separators = strings(self.eval(fn, args[0], env, depth)) if args else {" "}
            pieces = {piece for s in strings(receiver) for sep in separators
                      for piece in (s.split(sep) if WILD not in s and WILD not in sep else [WILD])}
            return values(ListV(union(pieces)))
        if method in ("partition", "rpartition") and args:
            parts: set = set()
            for text in strings(receiver):
                for sep in strings(self.eval(fn, args[0], env, depth)):
                    cut = text.find(sep) if method == "partition" else text.rfind(sep)
                    head, tail = (text[:cut], text[cut + len(sep):]) if cut >= 0 else (WILD, WILD)
                    sure = cut >= 0 and WILD not in sep and WILD not in (head if method == "partition" else tail)
                    parts.add(TupleV((values(head if sure else WILD), values(sep), values(tail if sure else WILD))))
            return union(parts) or values(UNKNOWN)
        if method in ("startswith", "endswith") and len(args) == 1:
            prefixes = self.eval(fn, args[0], env, depth)
            check = starts_with if method == "startswith" else ends_with
            outcomes = {check(t, p) for t in receiver for p in prefixes}
            return values(*({True: TRUE, False: FALSE}[o] for o in outcomes if o is not None)) | (
                values(TRUE, FALSE) if None in outcomes else values())
        if method in STRING_METHODS_SAME:
            return union({s if WILD in s else getattr(s, method)() for s in strings(receiver)})
        if method == "encode":
            return values(*(a for a in receiver if isinstance(a, JsonV))) | (
                values(UNKNOWN) if any(not isinstance(a, JsonV) for a in receiver) else values())
        for arg in [*args, *(k.value for k in node.keywords)]:
            self.eval(fn, arg, env, depth)
        return values(UNKNOWN)

    def invoke(self, fn: Function, atom: Any, method: str, node: ast.Call, env: dict | None, depth: int) -> Values:
        """``<atom>.<method>(...)`` for a module, class or instance."""
        if isinstance(atom, RefV) and isinstance(atom.target, Module):
            found = [t for t in self.name(atom.target.top, method, None, depth) if isinstance(t, RefV)]
            return union(*(self.apply(fn, t.target, node, env, depth, receiver=None) for t in found)
                         ) or values(UNKNOWN)
        if isinstance(atom, RefV) and isinstance(atom.target, ClassInfo):
            target = atom.target.methods.get(method)
            return self.apply(fn, target, node, env, depth, receiver=values(atom)) if target else values(UNKNOWN)
        if isinstance(atom, ObjV):
            target = atom.cls.methods.get(method)
            if target is not None and not target.is_property:
                return self.apply(fn, target, node, env, depth, receiver=values(atom))
            return self.call_value(fn, self.member(atom.cls, atom, method, depth), node, env, depth)
        return values(UNKNOWN)

    def call_value(self, fn: Function, callee: Values, node: ast.Call, env: dict | None, depth: int) -> Values:
        out: set = set()
        for atom in callee:
            if isinstance(atom, RefV):
                out |= self.apply(fn, atom.target, node, env, depth, receiver=None, closure=atom.closure)
            elif isinstance(atom, OpV):
                self.record(fn, node, atom.service, atom.operation, env, depth)
                out.add(UNKNOWN)
            else:
                out.add(UNKNOWN)
        return union(out)

    def apply(self, fn: Function, target: Any, node: ast.Call, env: dict | None, depth: int,
              *, receiver: Values | None, closure: Any = None) -> Values:
        if isinstance(target, ClassInfo):
            if target.is_dataclass:
                names = [n for n, _ in target.fields]
                args: dict[str, Values] = {}
                for index, arg in enumerate(node.args):
                    if index < len(names) and not isinstance(arg, ast.Starred):
                        args[names[index]] = self.eval(fn, arg, env, depth)
                for keyword in node.keywords:
                    if keyword.arg:
                        args[keyword.arg] = self.eval(fn, keyword.value, env, depth)
                return values(ObjV(target, tuple(sorted(args.items()))))
            init = target.methods.get("__init__")
            args = {}
            if init is not None:
                bound = self.bind_arguments(init, node, fn, env, depth, receiver=values(UNKNOWN))
                self.visit(init, bound, depth)
                args = {k: v for k, v in bound.items() if k != init.params[0]}
            return values(ObjV(target, tuple(sorted(args.items()))))
        if not isinstance(target, Function):
            return values(UNKNOWN)
        bound = self.bind_arguments(target, node, fn, env, depth, receiver=receiver, closure=closure)
        if _is_classmethod(target) and target.params:
            bound[target.params[0]] = receiver if receiver is not None else values(RefV(target.cls))
        self.visit(target, bound, depth)
        if target.key == STORE_READ:  # an item of the ledger, or None
            return values(ItemV(bound.get("pk", values(UNKNOWN)), bound.get("sk", values(UNKNOWN))), NONE)
        return self.returns(target, bound, depth)

    def returns(self, fn: Function, bound: dict[str, Values], depth: int) -> Values:
        def compute() -> Values:
            returned, ends = self._returns_in(fn, fn.node.body, bound, depth)
            return union(*(self.eval(fn, r, env, depth) for r, env in returned), () if ends else values(NONE))

        return self._solved(("returns", id(fn), _frozen(bound)), depth, compute)

    def _returns_in(self, fn: Function, body: list[ast.stmt], env: dict | None,
                    depth: int) -> tuple[list[tuple[ast.expr | None, dict | None]], bool]:
        """The return statements a context can reach, each with the context it returns in (a loop over a tuple of
        constants is unrolled: ``for kind in JOB_KINDS: if name.startswith(kind): return kind``), and whether the
        block always ends in a return or raise."""
        out: list[tuple[ast.expr | None, dict | None]] = []
        for stmt in body:
            if isinstance(stmt, ast.Return):
                return [*out, (stmt.value, env)], True
            if isinstance(stmt, ast.Raise):
                return out, True
            if isinstance(stmt, ast.If):
                taken = self.truth(fn, stmt.test, env, depth)
                ends = True
                for branch, live, positive in ((stmt.body, taken is not False, True),
                                               (stmt.orelse, taken is not True, False)):
                    if live:
                        branch_env = self.narrowed(fn, stmt.test, env, depth, positive, branch)
                        found, branch_ends = self._returns_in(fn, branch, branch_env, depth)
                        out += found
                        ends &= branch_ends
                if ends:
                    return out, True
                continue
            unrolled = self._unrolled(fn, stmt, env, depth)
            if unrolled is not None:
                for element_env in unrolled:
                    found, ends = self._returns_in(fn, stmt.body, element_env, depth)
                    out += found
                    if ends:
                        return out, True
                found, ends = self._returns_in(fn, stmt.orelse, env, depth)
                out += found
                if ends:
                    return out, True
                continue
            for block in (getattr(stmt, "body", []), getattr(stmt, "orelse", []), getattr(stmt, "finalbody", []),
                          *(h.body for h in getattr(stmt, "handlers", []))):
                out += self._returns_in(fn, block, env, depth)[0]
        return out, False

    def _unrolled(self, fn: Function, stmt: ast.stmt, env: dict | None, depth: int) -> list[dict] | None:
        """``for x in <a tuple of known atoms>``: one context per element, in order (None: not such a loop)."""
        if not isinstance(stmt, ast.For) or not isinstance(stmt.target, ast.Name):
            return None
        sequence = self.eval(fn, stmt.iter, env, depth)
        if len(sequence) != 1 or not isinstance(next(iter(sequence)), TupleV):
            return None
        (elements,) = [a.elements for a in sequence]
        if any(len(e) != 1 for e in elements) or any(stmt.target.id in _assigned_in(s) for s in stmt.body):
            return None
        return [self._scope(env, {stmt.target.id: e}) for e in elements]

    def keywords(self, fn: Function, call: ast.Call, env: dict | None, depth: int) -> tuple[DictV, ...]:
        """A call's keyword arguments as dicts: one per combination of the ``**`` mappings it spreads."""
        combos: list[tuple[tuple[str, Values, bool], ...]] = [()]
        is_open = False
        for keyword in call.keywords:
            value = self.eval(fn, keyword.value, env, depth)
            if keyword.arg is not None:
                combos = [c + ((keyword.arg, value, False),) for c in combos]
                continue
            spreads = [a for a in value if isinstance(a, DictV)]
            is_open |= any(a.open for a in spreads) or len(spreads) < len(value)
            combos = [c + a.items for c in combos for a in spreads] or combos
        return tuple(DictV(c, is_open) for c in combos[:MAX_ALTERNATIVES])


@cache
def _declared_global(fn: Function) -> set[str]:
    return {n for node in fn.own_nodes() if isinstance(node, ast.Global) for n in node.names}


@cache
def _guarded_nodes(fn: Function) -> list[tuple[ast.AST, tuple]]:
    """Every node of a function (as Function.own_nodes), each with the (test, holds, branch) of the if statements
    it is in."""
    out: list[tuple[ast.AST, tuple]] = []
    defaults = [] if isinstance(fn.node, ast.Module) else [
        d for d in fn.node.args.defaults + fn.node.args.kw_defaults if d is not None]
    stack: list[tuple[ast.AST, tuple]] = [(n, ()) for n in [*fn.node.body, *defaults]]
    while stack:
        node, guards = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        out.append((node, guards))
        if isinstance(node, ast.If):
            stack.append((node.test, guards))
            stack += [(n, (*guards, (node.test, True, tuple(node.body)))) for n in node.body]
            stack += [(n, (*guards, (node.test, False, tuple(node.orelse)))) for n in node.orelse]
        else:
            stack += [(n, guards) for n in ast.iter_child_nodes(node)]
    return out


@cache
def _assigned_in(stmt: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


@cache
def _self_assignments(cls: ClassInfo) -> dict[str, list[tuple[Function, ast.expr]]]:
    """attr -> (method, value) of every ``self.<attr> = value`` in a class's methods."""
    found: dict[str, list[tuple[Function, ast.expr]]] = defaultdict(list)
    for method in cls.methods.values():
        for node in method.own_nodes():
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        found[t.attr].append((method, node.value))
    return found


def _frozen(env: Mapping | None) -> Any:
    return None if env is None else tuple(sorted(env.items()))


def _plain(env: dict | None) -> dict | None:
    """A context without the names a comprehension, loop or lambda bound (they hide only the function's own)."""
    if env is None or LOCALS not in env:
        return env
    hidden = env[LOCALS]
    rest = {k: v for k, v in env.items() if k not in hidden and k != LOCALS}
    return None if rest.get(NO_CONTEXT) and len(rest) == 1 else rest


def _has_context(env: dict | None) -> bool:
    return env is not None and not env.get(NO_CONTEXT)


def _enclosing(env: dict | None) -> dict | None:
    """The context of the function that defines the one ``env`` belongs to."""
    closure = env.get(CLOSURE) if env is not None else None
    return dict(closure) if closure is not None else None


def _kwonly(fn: Function) -> set[str]:
    return set() if isinstance(fn.node, ast.Module) else {a.arg for a in fn.node.args.kwonlyargs}


def _decorated(fn: Function, name: str) -> bool:
    return isinstance(fn.node, FunctionNode) and any(
        isinstance(d, ast.Name) and d.id == name for d in fn.node.decorator_list)


def _is_static(fn: Function) -> bool:
    return _decorated(fn, "staticmethod")


def _is_classmethod(fn: Function) -> bool:
    return _decorated(fn, "classmethod")


# -- calls: botocore operations reachable from a handler ----------------------------------------------------------
@dataclass(frozen=True)
class Call:
    service: str  # botocore service name (s3, sagemaker, application-autoscaling)
    operation: str  # API operation (CopyObject)
    kwargs: tuple[DictV, ...]  # the request's parameters, one DictV per way they may be put together
    location: str  # file:line
    function: str  # the Python function that makes it

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


@cache
def operations(service: str) -> dict[str, str]:
    """botocore method name -> API operation name."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@cache
def known_services() -> frozenset[str]:
    import botocore.session

    return frozenset(botocore.session.get_session().get_available_services())
