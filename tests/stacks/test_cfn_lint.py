"""cfn-lint on every synthesized template of every stage: no errors (warnings are reported, not fatal)."""

from __future__ import annotations

import pytest
from cfnlint.api import ManualArgs, lint_file

from stack_synth import KINDS

REGIONS = ["us-east-1", "eu-west-1"]


# api_key mode changes only the serving stack; its other templates equal dev's.
CASES = [(stage, kind) for stage in ("dev", "prod") for kind in KINDS] + [("dev_api_key", "Serving")]


@pytest.mark.parametrize("stage, kind", CASES)
def test_template_has_no_cfn_lint_errors(request, stage, kind):
    synth = request.getfixturevalue(stage)
    path = synth.outdir / f"{synth.stack_names[kind]}.template.json"
    matches = lint_file(path, ManualArgs(regions=REGIONS))
    errors = [f"{m.rule.id} {m.message} ({m.linenumber})" for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)
    # Proof that the linter really read this template: it knows how many resources it has.
    assert len(synth.templates[kind]["Resources"]) > 3
