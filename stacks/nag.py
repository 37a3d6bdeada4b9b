"""cdk-nag acknowledgements and IAM statements whose wildcards carry their justification.

Every acknowledgement names one construct and one finding (``AwsSolutions-IAM5[Resource::...]``) and a
reason. Wildcard permissions can only be added through ``ScopedPolicy.allow(..., why=...)``, which
acknowledges exactly the wildcards that statement introduces, on the role that receives it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Acknowledgment, Aws, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct

NAG_PACK = "AwsSolutions"
# Assembly metadata of a grant no reachable call needs, kept on purpose (tests/stacks/iam_coverage reads it).
UNUSED_GRANT = "mlops:unused-grant"


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. ``AwsSolutions-S1``) on one construct, with a reason."""
    if not finding.startswith(f"{NAG_PACK}-"):
        raise ValueError(f"not an {NAG_PACK} finding: {finding}")
    if isinstance(construct, Stack):
        raise ValueError("acknowledge findings on the resource, never on a whole stack")
    if len(reason.strip()) < 20:
        raise ValueError(f"acknowledging {finding} needs a real reason, got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{NAG_PACK}::{finding}", reason=reason))


def acknowledge_unused_grant(construct: IConstruct, *, actions: Sequence[str], resources: Sequence[str], reason: str,
                             principal: str | None = None) -> None:
    """Keep a grant the IAM coverage test finds no reachable call for: one grant (actions x resources, on the role
    or, with ``principal``, in the resource policy of ``construct``), one reason."""
    if len(reason.strip()) < 40:  # the coverage test asks as much
        raise ValueError(f"keeping unused grant {actions} needs a real reason, got {reason!r}")
    data: dict[str, Any] = {"actions": list(actions), "resources": list(resources), "reason": reason}
    if principal:
        data["principal"] = principal
    construct.node.add_metadata(UNUSED_GRANT, data)


def nag_text(value: str) -> str:
    """How cdk-nag prints a string holding pseudo-parameter tokens (``<AWS::Region>``)."""
    out = (value.replace(Aws.PARTITION, "<AWS::Partition>")
           .replace(Aws.REGION, "<AWS::Region>")
           .replace(Aws.ACCOUNT_ID, "<AWS::AccountId>")
           .replace(Aws.URL_SUFFIX, "<AWS::URLSuffix>"))
    if "${Token[" in out:
        raise ValueError(f"cannot predict cdk-nag's rendering of {value!r}; build it from names, not references")
    return out


def logical_ref(construct: IConstruct, attribute: str) -> str:
    """cdk-nag's rendering of ``Fn::GetAtt`` on a resource of the same stack: ``<LogicalId.Attr>``."""
    stack = Stack.of(construct)
    cfn = construct.node.default_child if construct.node.default_child is not None else construct
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.{attribute}>"  # type: ignore[arg-type]


def arn(service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
    """An ARN in this stack's partition/region/account (pseudo parameters, so stacks stay env-agnostic)."""
    return (f"arn:{Aws.PARTITION}:{service}:{Aws.REGION if region else ''}:"
            f"{Aws.ACCOUNT_ID if account else ''}:{resource}")


class ScopedPolicy:
    """Adds statements to one role; a wildcard is accepted only with the reason it is needed."""

    def __init__(self, role: iam.IRole) -> None:
        self.role = role
        self._reasons: dict[str, list[str]] = {}

    def acknowledge_wildcard(self, wildcard: str, why: str) -> None:
        """Acknowledge ``AwsSolutions-IAM5[<wildcard>]`` on the role; reasons of repeated findings add up."""
        reasons = self._reasons.setdefault(wildcard, [])
        if why not in reasons:
            reasons.append(why)
        # A later acknowledgement of the same id replaces the earlier one, so it carries every reason.
        acknowledge(self.role, f"AwsSolutions-IAM5[{wildcard}]", " | ".join(reasons))

    def allow(self, *, actions: Sequence[str], resources: Sequence[str], why: str | None = None,
              conditions: Mapping[str, Any] | None = None, sid: str | None = None,
              why_unused: str | None = None) -> iam.PolicyStatement:
        """``why_unused``: the grant is kept although no reachable call needs it (the IAM coverage test)."""
        if any(a == "*" or a.endswith(":*") for a in actions):
            raise ValueError(f"service-wide action wildcards are never allowed: {actions}")
        wildcards = [f"Action::{a}" for a in actions if "*" in a]
        # Only literal wildcards matter; references to other resources (tokens) are exact ARNs.
        wildcards += [f"Resource::{nag_text(r)}" for r in resources if "*" in r]
        if wildcards and not why:
            raise ValueError(f"wildcards {wildcards} need a reason (why=...)")
        statement = iam.PolicyStatement(actions=list(actions), resources=list(resources),
                                        conditions=dict(conditions) if conditions else None, sid=sid)
        self.role.add_to_principal_policy(statement)
        for wildcard in dict.fromkeys(wildcards):
            self.acknowledge_wildcard(wildcard, why or "")
        if why_unused:
            acknowledge_unused_grant(self.role, actions=actions, resources=resources, reason=why_unused)
        return statement
