"""The CloudFormation resolver (moto's clean_json over the stack's names) and the cloud assembly reader."""

import json

import pytest

from local.cfn import Resolver, StackTemplate, UnresolvedReference, cfn_physical_name, load_assembly
from local.provision import creation_order, references

ACCOUNT, REGION = "123456789012", "eu-west-1"

STORAGE = {
    "Parameters": {"BootstrapVersion": {"Type": "String", "Default": "/cdk-bootstrap/hnb659fds/version"}},
    "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}},
    "Resources": {
        "DataBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Join": ["", [
            "mlops-dev-data-", {"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}]]}}},
        "Ledger": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "ProdOnly": {"Type": "AWS::SNS::Topic", "Condition": "IsProd"},
    },
    "Outputs": {
        "DataBucketName": {"Value": {"Ref": "DataBucket"}},
        "ExportLedgerArn": {"Value": {"Fn::GetAtt": ["Ledger", "Arn"]},
                            "Export": {"Name": "Storage:ExportsOutputFnGetAttLedgerArn"}},
    },
}


def make_resolver():
    resolver = Resolver(ACCOUNT, REGION)
    stack = StackTemplate("Storage", STORAGE, path=None)  # type: ignore[arg-type]
    resolver.add_stack(stack)
    bucket = resolver.default_name("Storage", "DataBucket", STORAGE["Resources"]["DataBucket"])
    resolver.register("Storage", "DataBucket", bucket, Arn=f"arn:aws:s3:::{bucket}")
    table = resolver.default_name("Storage", "Ledger", STORAGE["Resources"]["Ledger"])
    resolver.register("Storage", "Ledger", table, Arn=resolver.arn("dynamodb", f"table/{table}"))
    return resolver, stack


def test_explicit_names_join_pseudo_parameters():
    resolver, _ = make_resolver()
    assert resolver.resolve("Storage", {"Ref": "DataBucket"}) == "mlops-dev-data-123456789012-eu-west-1"


def test_generated_names_follow_cloudformation_shape():
    name = cfn_physical_name("Storage", "Ledger")
    assert name.startswith("Storage-Ledger-") and len(name.split("-")[-1]) == 12
    bucket = cfn_physical_name("MyStack", "SomeVeryLongLogicalIdForABucket" * 3, lowercase=True, limit=63)
    assert len(bucket) <= 63 and bucket == bucket.lower()


def test_outputs_exports_and_cross_stack_import():
    resolver, stack = make_resolver()
    outputs = resolver.publish_outputs(stack)
    assert outputs["DataBucketName"] == "mlops-dev-data-123456789012-eu-west-1"
    pipeline = StackTemplate("Pipeline", {"Resources": {}}, path=None)  # type: ignore[arg-type]
    resolver.add_stack(pipeline)
    value = resolver.resolve("Pipeline", {"Fn::ImportValue": "Storage:ExportsOutputFnGetAttLedgerArn"})
    assert value == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/" + cfn_physical_name("Storage", "Ledger")


def test_sub_select_split_if_novalue_parameters_and_conditions():
    resolver, _ = make_resolver()
    assert resolver.resolve("Storage", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${DataBucket}/incoming/*"}) == (
        "arn:aws:s3:::mlops-dev-data-123456789012-eu-west-1/incoming/*")
    assert resolver.resolve("Storage", {"Fn::Sub": ["${X}-${!Literal}", {"X": {"Ref": "AWS::Region"}}]}) == (
        "eu-west-1-${Literal}")
    assert resolver.resolve("Storage", {"Fn::Sub": "${Ledger.Arn}"}).endswith(":table/" + cfn_physical_name("Storage", "Ledger"))
    assert resolver.resolve("Storage", {"Fn::Select": [1, {"Fn::Split": [":", "a:b:c"]}]}) == "b"
    assert resolver.resolve("Storage", {"Fn::If": ["IsProd", "yes", {"Ref": "AWS::NoValue"}]}) is None
    assert resolver.resolve("Storage", {"A": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, "B": 2}) == {"B": 2}
    assert resolver.resolve("Storage", {"Ref": "BootstrapVersion"}) == "/cdk-bootstrap/hnb659fds/version"
    assert not resolver.resource_enabled("Storage", STORAGE["Resources"]["ProdOnly"])


def test_unknown_reference_fails_loudly():
    resolver, _ = make_resolver()
    with pytest.raises(UnresolvedReference, match="Missing"):
        resolver.resolve("Storage", {"Ref": "Missing"})
    with pytest.raises(UnresolvedReference):
        resolver.resolve("Storage", {"Fn::GetAtt": ["DataBucket", "NoSuchAttr"]})
    with pytest.raises(UnresolvedReference):
        resolver.resolve("Storage", {"Fn::ImportValue": "nobody-exports-this"})


def test_references_finds_dependencies():
    value = {"A": {"Ref": "X"}, "B": {"Fn::GetAtt": ["Y", "Arn"]}, "C": {"Fn::Sub": "${Z.Arn}/${AWS::Region}"},
             "D": {"Ref": "AWS::AccountId"}}
    assert references(value) == {"X", "Y", "Z"}


def test_load_assembly_orders_by_dependency_and_reads_nested_assemblies(tmp_path):
    nested = tmp_path / "assembly-Dev"
    nested.mkdir()
    (nested / "A.template.json").write_text(json.dumps({"Resources": {}}))
    (nested / "B.template.json").write_text(json.dumps({"Resources": {}}))
    (nested / "manifest.json").write_text(json.dumps({"artifacts": {
        "DevB": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "B.template.json",
                                                                     "stackName": "dev-b"},
                 "dependencies": ["DevA"]},
        "DevA": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "A.template.json",
                                                                     "stackName": "dev-a"}},
    }}))
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {
        "assembly-Dev": {"type": "cdk:cloud-assembly", "properties": {"directoryName": "assembly-Dev"}}}}))
    stacks = load_assembly(tmp_path)
    assert [s.name for s in stacks] == ["dev-a", "dev-b"]
    assert stacks[1].dependencies == ["dev-a"]


def test_creation_order_follows_references_and_depends_on():
    resources = {
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}},
               "DependsOn": ["Policy"]},
        "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}]}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Rule": {"Type": "AWS::Events::Rule", "Properties": {"Targets": [{"Arn": {"Fn::Sub": "${Fn.Arn}"}}]}},
    }
    order = creation_order(resources)
    assert order.index("Role") < order.index("Policy") < order.index("Fn") < order.index("Rule")


def test_conditions_combine_and_reference_each_other():
    template = {"Conditions": {"InRegion": {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]},
                               "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
                               "IsProd": {"Fn::Equals": ["a", "b"]},
                               "Both": {"Fn::And": [{"Condition": "InRegion"}, {"Condition": "NotProd"}]}},
                "Resources": {}}
    resolver = Resolver(ACCOUNT, REGION)
    resolver.add_stack(StackTemplate("S", template, path=None))  # type: ignore[arg-type]
    assert resolver.condition("S", "Both") is True
    with pytest.raises(UnresolvedReference, match="unknown condition"):
        resolver.condition("S", "Nope")


def test_values_go_through_motos_own_resolution(monkeypatch):
    """The resolver is moto's clean_json with the stack's names: not a second implementation of intrinsics."""
    import moto.cloudformation.parsing as parsing

    seen = []
    original = parsing.clean_json
    monkeypatch.setattr(parsing, "clean_json", lambda value, scope: seen.append(value) or original(value, scope))
    resolver, _ = make_resolver()
    assert resolver.resolve("Storage", {"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]}) == "a-eu-west-1"
    assert {"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]} in seen
