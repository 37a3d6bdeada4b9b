"""The Lambda asset's code: modules, functions, classes, and what a handler can reach."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .policies import AnalysisError


# -- the code: modules, functions, reachability -----------------------------------------------------------------
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(eq=False)
class Function:
    module: "Module"
    name: str  # qualified within the module: f, Class.m, f.<locals>.g; <module> for top-level code
    node: FunctionNode | ast.Module
    cls: "ClassInfo | None" = None
    parent: "Function | None" = None
    nested: dict[str, "Function"] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.module.name}.{self.name}"

    def __repr__(self) -> str:
        return f"<function {self.key}>"

    @property
    def params(self) -> list[str]:
        if isinstance(self.node, ast.Module):
            return []
        a = self.node.args
        return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]

    def default(self, param: str) -> ast.expr | None:
        if isinstance(self.node, ast.Module):
            return None
        a = self.node.args
        positional = a.posonlyargs + a.args
        for p, d in zip(positional[len(positional) - len(a.defaults):], a.defaults):
            if p.arg == param:
                return d
        for p, d in zip(a.kwonlyargs, a.kw_defaults):
            if p.arg == param:
                return d
        return None

    @property
    def is_property(self) -> bool:
        return isinstance(self.node, FunctionNode) and any(
            isinstance(d, ast.Name) and d.id == "property" for d in self.node.decorator_list)

    def own_nodes(self) -> Iterator[ast.AST]:
        """Every node of the body, lambdas included, nested defs and classes excluded (they are functions of
        their own); for module code, everything outside defs and classes."""
        body = self.node.body
        defaults = [] if isinstance(self.node, ast.Module) else [
            d for d in self.node.args.defaults + self.node.args.kw_defaults if d is not None]
        stack: list[ast.AST] = [*body, *defaults]
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            yield node
            stack.extend(ast.iter_child_nodes(node))

    def location(self, node: ast.AST) -> str:
        return f"{self.module.relpath}:{getattr(node, 'lineno', '?')}"


@dataclass(eq=False)
class ClassInfo:
    module: "Module"
    name: str
    node: ast.ClassDef
    methods: dict[str, Function] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.module.name}.{self.name}"

    def __repr__(self) -> str:
        return f"<class {self.key}>"

    @property
    def is_dataclass(self) -> bool:
        return any("dataclass" in ast.unparse(d) for d in self.node.decorator_list)

    @property
    def fields(self) -> list[tuple[str, ast.expr | None]]:
        return [(s.target.id, s.value) for s in self.node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]


@dataclass(eq=False)
class Module:
    name: str
    relpath: str
    tree: ast.Module
    functions: dict[str, Function] = field(default_factory=dict)  # top-level functions by name
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (module, symbol)
    top: Function = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<module {self.name}>"


class Code:
    """The modules of the Lambda asset (every .py file under ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, Module] = {}
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root)
            name = ".".join(relative.with_suffix("").parts)
            name = name[: -len(".__init__")] if name.endswith(".__init__") else name
            tree = ast.parse(path.read_text(), filename=str(path))
            self.modules[name] = Module(name=name, relpath=f"{root.name}/{relative.as_posix()}", tree=tree)
        for module in self.modules.values():
            self._index(module)

    def add_module(self, name: str, source: str) -> Module:
        """A module of the analysis's own (FACTS), importing the asset's modules like they import each other."""
        if name not in self.modules:
            module = Module(name=name, relpath=f"<{name}>", tree=ast.parse(source, filename=f"<{name}>"))
            self.modules[name] = module
            self._index(module)
        return self.modules[name]

    def _index(self, module: Module) -> None:
        module.top = Function(module=module, name="<module>", node=module.tree)
        package = module.name.rpartition(".")[0] if not (self.root / Path(*module.name.split("."))).is_dir() \
            else module.name

        def functions_in(body: list[ast.stmt], parent: Function | None, prefix: str, cls: ClassInfo | None) -> None:
            for stmt in body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    fn = Function(module=module, name=f"{prefix}{stmt.name}", node=stmt, cls=cls, parent=parent)
                    if parent is not None:
                        parent.nested[stmt.name] = fn
                    elif cls is not None:
                        cls.methods[stmt.name] = fn
                    else:
                        module.functions[stmt.name] = fn
                    nested_defs(fn)
                elif isinstance(stmt, ast.ClassDef) and parent is None and cls is None:
                    info = ClassInfo(module=module, name=stmt.name, node=stmt)
                    module.classes[stmt.name] = info
                    functions_in(stmt.body, None, f"{stmt.name}.", info)
                elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While)) and parent is None:
                    for block in ("body", "orelse", "finalbody", "handlers"):
                        inner = getattr(stmt, block, [])
                        inner = [s for h in inner for s in h.body] if block == "handlers" else inner
                        functions_in(inner, parent, prefix, cls)

        def nested_defs(fn: Function) -> None:
            stack = list(fn.node.body)
            while stack:
                node = stack.pop()
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    inner = Function(module=module, name=f"{fn.name}.<locals>.{node.name}", node=node, cls=fn.cls,
                                     parent=fn)
                    fn.nested[node.name] = inner
                    nested_defs(inner)
                elif not isinstance(node, ast.ClassDef):
                    stack.extend(ast.iter_child_nodes(node))

        functions_in(module.tree.body, None, "", None)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module.imports[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0], None)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(p for p in [*parts, node.module or ""] if p)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}" if base else alias.name
                    module.imports[alias.asname or alias.name] = (
                        (submodule, None) if submodule in self.modules else (base, alias.name))

    # -- name resolution (static) --
    def lookup(self, fn: Function, name: str) -> list[Any]:
        """What a name refers to in a function's scope: nested defs, module functions/classes/imports."""
        scope: Function | None = fn
        while scope is not None:
            if name in scope.nested:
                return [scope.nested[name]]
            scope = scope.parent
        module = fn.module
        if name in module.functions:
            return [module.functions[name]]
        if name in module.classes:
            return [module.classes[name]]
        if name in module.imports:
            target, symbol = module.imports[name]
            if symbol is None:
                return [self.modules[target]] if target in self.modules else []
            if target in self.modules:
                other = self.modules[target]
                if symbol in other.functions:
                    return [other.functions[symbol]]
                if symbol in other.classes:
                    return [other.classes[symbol]]
                if symbol in other.imports:
                    return self.lookup(other.top, symbol)
        return []

    def methods_named(self, name: str) -> list[Function]:
        return [c.methods[name] for m in self.modules.values() for c in m.classes.values() if name in c.methods]

    def targets(self, fn: Function, node: ast.AST) -> list[Any]:
        """Functions, classes and modules a Name or Attribute node may refer to (statically)."""
        if isinstance(node, ast.Name):
            return self.lookup(fn, node.id)
        if isinstance(node, ast.Attribute):
            bases = self.targets(fn, node.value) if isinstance(node.value, (ast.Name, ast.Attribute)) else []
            modules = [b for b in bases if isinstance(b, Module)]
            if modules:
                return [t for m in modules for t in self.lookup(m.top, node.attr)]
            classes = [b for b in bases if isinstance(b, ClassInfo)]
            if classes:
                return [c.methods[node.attr] for c in classes if node.attr in c.methods]
            return self.methods_named(node.attr)
        return []

    def reachable(self, module_name: str, entry: str = "handler") -> list[Function]:
        """Functions reachable from a handler module's import and its entry function."""
        if module_name not in self.modules:
            raise AnalysisError(f"no module {module_name} under {self.root}")
        module = self.modules[module_name]
        start = [module.top] + ([module.functions[entry]] if entry in module.functions else [])
        seen: dict[int, Function] = {}
        work = list(start)
        while work:
            fn = work.pop()
            if id(fn) in seen:
                continue
            seen[id(fn)] = fn
            if fn.parent is not None:
                work.append(fn.parent)
            for node in fn.own_nodes():
                if isinstance(node, (ast.Name, ast.Attribute)):
                    for target in self.targets(fn, node):
                        work += self._entry_points(target)
        return list(seen.values())

    @staticmethod
    def _entry_points(target: Any) -> list[Function]:
        if isinstance(target, Function):
            return [target]
        if isinstance(target, ClassInfo):  # constructing or naming a class runs its initialisers
            return [target.methods[m] for m in ("__init__", "__post_init__") if m in target.methods] + [
                target.module.top]
        if isinstance(target, Module):
            return [target.top]
        return []
