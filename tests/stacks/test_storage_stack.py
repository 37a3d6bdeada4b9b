"""Storage stack: KMS, buckets (versioned, encrypted, TLS-only, private, logged, evented), the ledger."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

BLOCK_ALL = {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
             "RestrictPublicBuckets": True}


def buckets(synth):
    """Buckets by purpose (data/artifacts/logs), from their deterministic names."""
    out = {}
    for logical_id, res in synth.resources("Storage", "AWS::S3::Bucket").items():
        name = res["Properties"]["BucketName"]["Fn::Join"][1][0]  # "mlops-dev-data-" + account + ...
        out[name.removeprefix(f"{synth.config.prefix}-").rstrip("-")] = (logical_id, res)
    assert set(out) == {"data", "artifacts", "logs"}
    return out


def test_customer_managed_key_rotates(synth):
    synth.template("Storage").has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    synth.template("Storage").has_resource_properties("AWS::KMS::Alias",
                                                      {"AliasName": f"alias/{synth.config.prefix}"})


def test_key_lets_only_the_needed_services_use_it(synth):
    (key,) = synth.resources("Storage", "AWS::KMS::Key").values()
    services = {}
    for st in key["Properties"]["KeyPolicy"]["Statement"]:
        principal = st["Principal"]
        if "Service" in principal:
            service = principal["Service"] if isinstance(principal["Service"], str) else "logs"
            services[service] = st
    assert set(services) == {"events.amazonaws.com", "cloudwatch.amazonaws.com", "logs"}
    assert services["logs"]["Condition"]["ArnLike"]  # only log groups of this account/region
    assert services["cloudwatch.amazonaws.com"]["Condition"]["StringEquals"]["aws:SourceAccount"] == {
        "Ref": "AWS::AccountId"}
    for st in services.values():
        assert set(st["Action"]) <= {"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                                     "kms:GenerateDataKey", "kms:GenerateDataKey*",
                                     "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"}


@pytest.mark.parametrize("purpose", ["data", "artifacts"])
def test_data_buckets_are_versioned_kms_encrypted_private_logged_and_evented(synth, purpose):
    logical_id, bucket = buckets(synth)[purpose]
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "Fn::ImportValue" not in str(rule) and "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert rule["BucketKeyEnabled"] is True
    assert props["PublicAccessBlockConfiguration"] == BLOCK_ALL
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}  # no ACLs
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": buckets(synth)["logs"][0]}
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    assert props["LifecycleConfiguration"]["Rules"], "lifecycle rules are required"


def test_data_bucket_never_expires_uploads(synth):
    _, bucket = buckets(synth)["data"]
    for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]:
        assert "ExpirationInDays" not in rule, rule  # only noncurrent versions / incomplete uploads expire


def test_validation_copies_expire_and_nothing_else_of_the_artifacts_does_early(synth):
    _, bucket = buckets(synth)["artifacts"]
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    staged = rules["expire-validation-inputs"]
    assert staged["Prefix"] == "validation-input/" and staged["Status"] == "Enabled"
    assert staged["ExpirationInDays"] == 14 and staged["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    expiring = {r.get("Prefix") for r in rules.values() if "ExpirationInDays" in r}
    assert expiring == {"validation-input/", "datacapture/"}  # models and reports are never expired


def test_log_bucket_is_private_versioned_and_s3_encrypted(synth):
    _, bucket = buckets(synth)["logs"]
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == BLOCK_ALL
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    # S3 server access logging cannot write to SSE-KMS buckets.
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "AES256"


def test_every_bucket_denies_plain_http(synth):
    policies = synth.resources("Storage", "AWS::S3::BucketPolicy")
    covered = set()
    for policy in policies.values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false":
                assert st["Principal"] == {"AWS": "*"} and st["Action"] == "s3:*"
                covered.add(policy["Properties"]["Bucket"]["Ref"])
    assert covered == {logical_id for logical_id, _ in buckets(synth).values()}


def test_ledger_table_matches_the_contract(synth):
    synth.template("Storage").has_resource_properties("AWS::DynamoDB::Table", {
        "TableName": f"{synth.config.prefix}-ledger",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": Match.array_with([{"AttributeName": "pk", "AttributeType": "S"},
                                                  {"AttributeName": "sk", "AttributeType": "S"}]),
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS",
                                               "KMSMasterKeyId": Match.any_value()}),
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
    })


def test_prod_retains_state_on_stack_delete(prod):
    for type_ in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::KMS::Key"):
        for logical_id, res in prod.resources("Storage", type_).items():
            assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain", logical_id
    prod.template("Storage").has_resource_properties("AWS::DynamoDB::Table", {"DeletionProtectionEnabled": True})
    assert not prod.resources("Storage", "Custom::S3AutoDeleteObjects")


def test_dev_cleans_up_on_stack_delete(dev):
    for type_ in ("AWS::S3::Bucket", "AWS::DynamoDB::Table"):
        for res in dev.resources("Storage", type_).values():
            assert res["DeletionPolicy"] == "Delete"
    assert len(dev.resources("Storage", "Custom::S3AutoDeleteObjects")) == 3


def test_prod_storage_stack_has_termination_protection(prod, dev):
    for synth, expected in ((prod, True), (dev, False)):
        manifest = json.loads((synth.outdir / "manifest.json").read_text())
        props = manifest["artifacts"][synth.stack_names["Storage"]]["properties"]
        assert props.get("terminationProtection", False) is expected


PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": "123456789012", "AWS::Region": "eu-west-1",
          "AWS::URLSuffix": "amazonaws.com"}


def resolve(value, refs: dict | None = None):
    """Fn::Join / Ref of pseudo parameters (and of given logical ids) as a deployment would resolve them."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(p, refs) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return {**PSEUDO, **(refs or {})}[value["Ref"]]
    assert isinstance(value, str), value
    return value


VALIDATED_WRITES = {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:PutObjectAcl",
                    "s3:PutObjectVersionAcl", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"}


def test_only_the_validation_verdict_may_write_validated_data(synth):
    """A direct write under validated/ would bypass validation (training reads all of it): the data bucket's
    policy denies every object write there to every principal but the processing-done function's role, which
    it names (the storage stack cannot reference the pipeline stack's role)."""
    data_id, _ = buckets(synth)["data"]
    (policy,) = [p for p in synth.resources("Storage", "AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": data_id}]
    refs = {data_id: "data-bucket"}
    denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
              if s["Effect"] == "Deny" and "aws:PrincipalArn" in json.dumps(s.get("Condition", {}))]
    (deny,) = denies
    assert deny["Principal"] == {"AWS": "*"}
    assert VALIDATED_WRITES <= set(deny["Action"]) and not any(a.startswith("s3:Delete") and "Tagging" not in a
                                                               for a in deny["Action"])
    resource = deny["Resource"]
    assert resource["Fn::Join"][1][0]["Fn::GetAtt"] == [data_id, "Arn"] and resource["Fn::Join"][1][1] == "/validated/*"
    (operator, condition), = deny["Condition"].items()
    assert operator == "ArnNotEquals"
    allowed = resolve(condition["aws:PrincipalArn"], refs)

    # The exempted ARN is exactly the role of the function that copies validated files.
    fn = next(r for _, r in synth.resources("Pipeline", "AWS::Lambda::Function").items()
              if r["Properties"].get("Handler") == "handlers.processing_done.handler")
    role = synth.templates["Pipeline"]["Resources"][fn["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
    role_name = resolve(role["RoleName"])
    assert allowed == f"arn:aws:iam::123456789012:role/{role_name}"
    assert role_name == f"{synth.config.prefix}-processing-done-eu-west-1" and len(role_name) <= 64


def test_no_other_role_is_granted_writes_under_validated(synth):
    """The bucket policy's exemption is the only legitimate writer: no other identity policy even tries."""
    from test_iam_policies import statements

    fn = next(r for _, r in synth.resources("Pipeline", "AWS::Lambda::Function").items()
              if r["Properties"].get("Handler") == "handlers.processing_done.handler")
    writer_role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    writers = set()
    for s in statements(synth):
        if not s.identity or s.body["Effect"] != "Allow":
            continue
        writes = [a for a in s.actions if a in VALIDATED_WRITES]
        text = json.dumps(s.resources)
        if writes and ("/validated/" in text or '/*"' in text and f"{synth.config.prefix}-data-" in text):
            policy = synth.templates[s.kind]["Resources"][s.logical_id]["Properties"]
            writers |= {r["Ref"] for r in policy.get("Roles", [])}
    assert writers == {writer_role}
