"""Grants, acknowledgements, the report, and the analysis of one app (coverage)."""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .policies import (
    ACK_METADATA, AnalysisError, Decision, Request, Statement, WILD, listify, sar, show, statement_allows)
from .source import Code
from .values import strings
from .evaluator import Call, Evaluator
from .facts import FACTS, FACTS_MODULE_NAME, ITEM_FACTS, fact_function, facts_module_source, item_facts
from .needs import (
    App, LambdaFunction, paths, platform_requests, requests_for_call, sagemaker_service_requests,
    transact_kinds)


# -- the report ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """One action on one resource pattern of an Allow statement, for one principal (role ARN or service)."""
    principal: str
    action: str
    resource: str
    statement: Statement = field(compare=False, hash=False, repr=False)
    owner: str = ""  # for resource policies: the ARN of the resource whose policy holds it

    def describe(self) -> str:
        condition = f" if {json.dumps(self.statement.conditions)}" if self.statement.conditions else ""
        return f"{self.action} on {self.resource}{condition}"


@dataclass
class Acknowledgement:
    path: str  # construct path it was made on
    actions: list[str]
    resources: list[str]
    reason: str
    principal: str | None = None  # resource policies: the service principal of the grant


@dataclass
class Report:
    requests: list[Request]
    missing: list[tuple[Request, Decision]]
    unused: list[Grant]
    acknowledged: list[tuple[Grant, Acknowledgement]]
    stale: list[Acknowledgement]
    gaps: list[str]
    calls: dict[str, list[Call]]  # function name -> its reachable calls
    principals: dict[str, str] = field(default_factory=dict)  # principal -> who it is (function, role path)
    unused_facts: list[str] = field(default_factory=list)  # FACTS keys and ITEM_FACTS rows no analysis applied

    def who(self, principal: str) -> str:
        return self.principals.get(principal, principal)

    def stale_facts(self) -> list[str]:
        """Facts (facts.py) no analysis applied: the project's own, so checked by its coverage test only."""
        return [f"STALE fact {f} (tests/stacks/iam_coverage/facts.py): no analysis reads what it describes; remove it "
                "(or the code changed how it reads that data: describe the new reads)" for f in self.unused_facts]

    def problems(self) -> list[str]:
        """One line per problem: what, where in the code or the stack, and what to change."""
        lines = []
        for r, d in self.missing:
            if d.denied_by:
                fix = f"denied by {', '.join(s.owner for s in d.denied_by)}: change that Deny or the call"
            elif r.principal.startswith("arn:"):
                fix = (f"{d.reason}; grant it to that role, scoped to that resource (a Capabilities method in "
                       "stacks/control_plane.py for a function, the role's class in stacks/pipeline.py for a SageMaker "
                       "role), or change the call")
            else:
                fix = (f"{d.reason}; allow {r.principal} in the resource policy of {show(r.resource)} (conditioned "
                       "on aws:SourceArn/aws:SourceAccount where the service sends them)")
            lines.append(f"MISSING {r.describe()}, as {self.who(r.principal)}: {fix}")
        for g in self.unused:
            where = f"the policy of {g.owner}" if g.owner else "its role"
            lines.append(f"UNUSED {g.describe()}, granted to {self.who(g.principal)} by {g.statement.owner}: no call "
                         f"of the code, nor any service acting as that principal, needs it. Remove it from {where}, or "
                         "keep it with a reason next to the grant (ScopedPolicy.allow(..., why_unused=...) or "
                         "nag.acknowledge_unused_grant(...)).")
        lines += [f"STALE acknowledgement on {a.path}: {a.actions} on {a.resources} ({a.reason!r}) matches no unused "
                  "grant: the grant is gone or now used; remove the acknowledgement" for a in self.stale]
        lines += [f"GAP {g}: the analysis cannot tell which client this is, so the call goes unchecked; obtain the "
                  "client through clients.get(...) where the code can be followed, or model it in "
                  "tests/stacks/iam_coverage/" for g in self.gaps]
        return lines


def acknowledgements(app: App, metadata: Mapping[str, dict]) -> list[Acknowledgement]:
    """The unused grants the stacks acknowledged (nag.acknowledge_unused_grant), resolved like the templates."""
    out = []
    for stack, entries_by_path in metadata.items():
        for path, entries in entries_by_path.items():
            for entry in entries:
                if entry.get("type") != ACK_METADATA:
                    continue
                data = app.cfn.resolve(stack, entry["data"])
                out.append(Acknowledgement(path=path.lstrip("/"), actions=listify(data["actions"]),
                                           resources=listify(data["resources"]), reason=data["reason"],
                                           principal=data.get("principal")))
    return out


def grants(app: App) -> list[Grant]:
    """Every (principal, action, resource) an analysed Allow statement grants, actions expanded by the SAR."""
    out: list[Grant] = []
    for role, statements in app.policies.identity.items():
        if role in app.unanalysed_roles:
            continue
        for st in statements:
            if st.effect != "Allow":
                continue
            if st.not_actions or st.not_resources:
                raise AnalysisError(f"{st.owner}: NotAction/NotResource grants are not modelled")
            out += [Grant(role, action, resource, st) for a in st.actions for action in sar().expand(a)
                    for resource in st.resources]
    for owner, st in app.policies.resource_policies:
        if st.effect != "Allow" or st.delegates_to_account():
            continue
        principals = listify(st.principal.get("Service")) if isinstance(st.principal, dict) else []
        aws = listify(st.principal.get("AWS")) if isinstance(st.principal, dict) else []
        if any(a in app.unanalysed_roles for a in aws):
            continue  # granted to a role whose work is not modelled (UNANALYSED_ROLES)
        if aws or not principals:
            raise AnalysisError(f"{st.owner}: a resource policy grant to {st.principal} is not modelled")
        out += [Grant(p, action, resource, st, owner) for p in principals for a in st.actions
                for action in sar().expand(a) for resource in st.resources]
    return out


def used(grant: Grant, requests: Iterable[Request]) -> bool:
    single = Statement(effect="Allow", actions=[grant.action], not_actions=[], resources=[grant.resource],
                       not_resources=[], conditions=grant.statement.conditions, principal=None, owner="")
    return any(r.principal == grant.principal and r.action.lower() == grant.action.lower()
               and (not grant.owner or r.resource == grant.owner or r.resource.startswith(grant.owner + "/")
                    or grant.owner.startswith("arn:aws:kms") or grant.owner.startswith("arn:aws:lambda"))
               and statement_allows(single, r) for r in requests)


def acknowledges(ack: Acknowledgement, grant: Grant, app: App) -> bool:
    if grant.owner:
        on_owner = any(s is grant.statement for o, s in app.policies.resource_policies
                       if s.owner.startswith(ack.path + "/") or s.owner == ack.path)
        return on_owner and ack.principal == grant.principal and grant.action in [
            a for x in ack.actions for a in sar().expand(x)] and grant.resource in ack.resources
    role_path = app.policies.role_paths.get(grant.principal, "")
    return (ack.principal is None and (role_path == ack.path + "/Resource" or role_path.startswith(ack.path + "/"))
            and grant.action.lower() in [a.lower() for x in ack.actions for a in sar().expand(x)]
            and grant.resource in ack.resources)


def analyse_function(app: App, code: Code, fn: LambdaFunction,
                     facts_used: set[str] | None = None) -> tuple[list[Call], list[str]]:
    """The client calls one function's handler can make, with their parameters (and the gaps of the analysis)."""
    module_name, _, entry = fn.handler.rpartition(".")
    reachable = code.reachable(module_name, entry)
    facts_module = code.add_module(FACTS_MODULE_NAME, facts_module_source())
    module = code.modules[module_name]
    entries = [module.top] + ([module.functions[entry]] if entry in module.functions else [])
    # Every module the handler imports runs its top-level code at init.
    entries += [f for f in reachable if f.name == "<module>" and f not in entries]
    calls: dict[tuple, Call] = {}
    gaps: set[str] = set()
    visited: set[str] = set()
    live: set[int] = set()
    pruned: set[int] = set()

    def evaluator(event_facts: Mapping[str, Iterable[str]]) -> Evaluator:
        return Evaluator(code, reachable, fn.env, event_facts,
                         {key: facts_module.functions[fact_function(key)] for key in FACTS}, item_facts(facts_module),
                         facts_used)

    def add(found: tuple[list[Call], list[str], set[str]]) -> None:
        calls.update({(c.name, c.location, c.kwargs): c for c in found[0]})
        gaps.update(found[1])
        visited.update(found[2])

    alternatives = app.event_facts(fn)
    for event_facts in alternatives:
        ev = evaluator(event_facts)
        add(ev.run(entries))
        live.update(ev.live_branches)
        pruned.update(ev.pruned_branches)
    # A function the code can reach that no path visited (a call the analysis could not follow) is visited too,
    # its parameters unknown, with every event alternative's facts; not one that only code the function's own
    # configuration rules out refers to (a feature switched off, an event its rules never deliver).
    ruled_out = ruled_out_functions(code, reachable, visited, pruned - live)
    unvisited = [f for f in reachable if f.key not in visited and f.key not in ruled_out]
    if unvisited:
        merged: dict[str, set[str]] = defaultdict(set)
        for event_facts in alternatives:
            for key, found_values in event_facts.items():
                merged[key] |= set(found_values)
        add(evaluator(merged).run(unvisited))
    return list(calls.values()), sorted(gaps)


def ruled_out_functions(code: Code, reachable: list, visited: set[str], dead_branches: set[int]) -> set[str]:
    """Keys of the unvisited functions every reference to which sits in a branch the context ruled out wherever it
    was evaluated (``dead_branches``: ids of the branches' statements), or in another such function."""
    dead_nodes: set[int] = set()
    for fn in reachable:
        for node in ast.walk(fn.node):
            if id(node) in dead_branches:
                dead_nodes.update(id(n) for n in ast.walk(node))
    sites: dict[str, list[tuple[str, int]]] = defaultdict(list)  # function key -> (referring function, node)
    for fn in reachable:
        for node in fn.own_nodes():
            if isinstance(node, (ast.Name, ast.Attribute)):
                for target in code.targets(fn, node):
                    for entry in Code._entry_points(target):
                        sites[entry.key].append((fn.key, id(node)))
    unvisited = {f.key for f in reachable if f.key not in visited}
    dead: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key in unvisited - dead:
            refs = sites.get(key, [])
            if refs and all(node in dead_nodes or owner in dead for owner, node in refs):
                dead.add(key)
                changed = True
    return dead


def coverage(templates: Mapping[str, dict], metadata: Mapping[str, dict], code_root: Path) -> Report:
    """The analysis of one app: every function's calls, the requests they and the services make, the decisions."""
    app = App(templates)
    code = Code(code_root)
    calls: dict[str, list[Call]] = {}
    gaps: list[str] = []
    facts_used: set[str] = set()
    for fn in app.functions:
        if fn.role_arn in app.unanalysed_roles or fn.handler == "framework.onEvent":
            continue
        if not (code_root / Path(*fn.handler.rpartition(".")[0].split("."))).with_suffix(".py").exists():
            raise AnalysisError(f"{fn.name}: handler {fn.handler} is not in {code_root} and not modelled")
        calls[fn.name], function_gaps = analyse_function(app, code, fn, facts_used)
        gaps += [f"{fn.name}: {g}" for g in function_gaps]
    every_call = [c for cs in calls.values() for c in cs]
    app.endpoint_config_keys = {k for c in every_call if c.operation == "CreateEndpointConfig"
                                for kw in c.kwargs for k in strings(paths(kw, "KmsKeyId"))}
    requests: list[Request] = []
    for fn in app.functions:
        tables = {t for c in calls.get(fn.name, []) if c.service == "dynamodb" for kw in c.kwargs
                  for t in strings(paths(kw, "TableName")) if t != WILD}
        for call in calls.get(fn.name, []):
            module = code.modules[call.function.rsplit(".", 1)[0]] if call.function.rsplit(".", 1)[0] in \
                code.modules else code.modules[".".join(call.function.split(".")[:2])]
            requests += requests_for_call(app, fn.role_arn, call, transact_kinds(module), tables)
    requests += sagemaker_service_requests(app, every_call)
    requests += platform_requests(app)
    unique: dict[tuple, Request] = {}
    for r in requests:
        unique.setdefault((r.principal, r.action, r.resource, r.context), r)
    requests = list(unique.values())
    missing = [(r, d) for r in requests for d in [app.policies.decide(r)] if not d.allowed]
    acks = acknowledgements(app, metadata)
    unused, acknowledged = [], []
    for grant in grants(app):
        if used(grant, requests):
            continue
        ack = next((a for a in acks if acknowledges(a, grant, app)), None)
        (acknowledged.append((grant, ack)) if ack else unused.append(grant))
    stale = [a for a in acks if not any(a is b for _, b in acknowledged)]
    principals = {arn: f"role {path}" for arn, path in app.policies.role_paths.items()}
    principals.update({f.role_arn: f"function {f.name} (role {app.policies.role_paths.get(f.role_arn, f.role_arn)})"
                       for f in app.functions})
    every_fact = [*FACTS, *(f"ITEM_FACTS[{i}]" for i in range(len(ITEM_FACTS)))]
    unused_facts = [f for f in every_fact if f not in facts_used] if calls else []
    return Report(requests, missing, unused, acknowledged, stale, gaps, calls, principals, unused_facts)
