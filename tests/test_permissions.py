"""The up-front permission check (ferry/permissions.py): who is simulated, what a refusal says, and
that a simulator which cannot answer means "not checked", never a failed run.

moto's server does not implement iam:SimulatePrincipalPolicy, so the simulator's answers are given
here by botocore's Stubber on a real IAM client (the request shapes are validated against the API
model); the fallback is tested against the running moto server.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from ferry.errors import BadInput
from ferry.iam import TableRef, table_source_statements
from ferry.permissions import Caller, check_allowed, checked_resource, simulator
from ferry.config import AwsSide

SOURCE = TableRef("us-east-1", "123456789012", "orders")


@pytest.mark.parametrize("arn, principal", [
    ("arn:aws:iam::123456789012:user/ops/alice", "arn:aws:iam::123456789012:user/ops/alice"),
    ("arn:aws:sts::123456789012:assumed-role/FerryOperator/ferry", "arn:aws:iam::123456789012:role/FerryOperator"),
    ("arn:aws-cn:sts::123456789012:assumed-role/R/s", "arn:aws-cn:iam::123456789012:role/R"),
    ("arn:aws:iam::123456789012:root", None),
    ("arn:aws:sts::123456789012:federated-user/bob", None),
])
def test_the_simulated_principal_is_the_user_or_the_role_behind_a_session(arn, principal):
    assert Caller("123456789012", arn).principal == principal


def evaluation(action: str, decision: str, resource: str) -> dict:
    return {"EvalActionName": action, "EvalDecision": decision, "EvalResourceName": resource}


def answer_each(stub: Stubber, statements: list[dict], result_for, expected: dict | None = None) -> None:
    """Queue the simulator's answer to each request check_allowed makes: `result_for(action, resource)`."""
    for statement in statements:
        for resource in filter(None, map(checked_resource, statement["Resource"])):
            params = expected and {**expected, "ActionNames": statement["Action"], "ResourceArns": [resource]}
            stub.add_response("simulate_principal_policy", {"EvaluationResults": [
                result_for(action, resource) for action in statement["Action"]]}, params)


def test_a_refused_action_is_bad_input_naming_the_action_the_resource_and_the_fix():
    iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    statements = table_source_statements(SOURCE)
    with Stubber(iam) as stub:
        answer_each(stub, statements, lambda action, resource: evaluation(
            action, "implicitDeny" if action == "dynamodb:UpdateTable" else "allowed", resource),
            {"PolicySourceArn": "arn:aws:iam::123456789012:user/alice"})
        with pytest.raises(BadInput) as refused:
            check_allowed(iam, "source", Caller("123456789012", "arn:aws:iam::123456789012:user/alice"), statements,
                          "ferry iam-policy table orders orders2")
        stub.assert_no_pending_responses()
    assert str(refused.value).startswith(f"the source side's credentials may not dynamodb:UpdateTable on {SOURCE.arn}"
                                         ", says IAM's policy simulator: grant the policy `ferry iam-policy table "
                                         "orders orders2` prints, then rerun")


@pytest.mark.parametrize("resource, asked", [
    ("arn:aws:dynamodb:us-east-1:1:table/t", "arn:aws:dynamodb:us-east-1:1:table/t"),
    ("arn:aws:dynamodb:us-east-1:1:table/t/index/*", None),
    ("arn:aws:dynamodb:us-east-1:1:table/t/stream/*", None),
    ("*", None),
    ("arn:aws:s3:::media/2026/*", "arn:aws:s3:::media/2026/ferry-permission-check"),
    ("arn:aws-cn:s3:::media", "arn:aws-cn:s3:::media"),
])
def test_the_simulator_is_asked_about_one_concrete_arn_per_resource_or_none(resource, asked):
    assert checked_resource(resource) == asked


def test_the_check_can_be_switched_off_for_access_a_resource_policy_grants(monkeypatch):
    iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    statements = table_source_statements(SOURCE)
    who = Caller("1", "arn:aws:iam::1:user/alice")
    with Stubber(iam) as stub:
        answer_each(stub, statements, lambda action, resource: evaluation(action, "implicitDeny", resource))
        monkeypatch.setenv("FERRY_PERMISSION_CHECK", "off")
        assert not check_allowed(iam, "source", who, statements, "x")  # the refusal queued was never asked for
        monkeypatch.delenv("FERRY_PERMISSION_CHECK")
        with pytest.raises(BadInput):
            check_allowed(iam, "source", who, statements, "x")


def test_every_action_allowed_passes_and_says_it_was_checked():
    iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    statements = table_source_statements(SOURCE)
    conditional = {"MissingContextValues": ["aws:RequestedRegion"]}  # not known: counted as allowed
    with Stubber(iam) as stub:
        answer_each(stub, statements, lambda action, resource: (
            {**evaluation(action, "implicitDeny", resource), **conditional} if action == "dynamodb:Scan"
            else evaluation(action, "allowed", resource)))
        assert check_allowed(iam, "source", Caller("1", "arn:aws:iam::123456789012:user/alice"), statements, "x")


def test_a_simulator_that_cannot_answer_means_not_checked(moto_endpoint):
    side = AwsSide(endpoint_url=moto_endpoint, region="us-east-1")
    assert simulator(side) is None  # an endpoint of its own: not even asked
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")  # moto answers it with a 500
    assert not check_allowed(iam, "source", Caller("123456789012", "arn:aws:iam::123456789012:user/moto"),
                             table_source_statements(SOURCE), "x")
    assert not check_allowed(iam, "source", Caller("123456789012", "arn:aws:iam::123456789012:root"),
                             table_source_statements(SOURCE), "x")


def test_a_failure_line_never_quotes_a_response_body():
    from botocore.parsers import ResponseParserError
    from ferry.errors import failure_line

    error = ResponseParserError("Unable to parse response, invalid XML received: b'<item>canary-value</item>'")
    error.ferry_step = "backfill a -> b segment 0"
    assert failure_line(error) == "backfill a -> b segment 0: ResponseParserError"


def test_arns_carry_the_partition_of_their_region():
    from ferry.iam import QueueRef, bucket_source_statements

    assert TableRef("cn-north-1", "1", "t").arn == "arn:aws-cn:dynamodb:cn-north-1:1:table/t"
    assert TableRef("us-gov-west-1", "1", "t").arn.startswith("arn:aws-us-gov:dynamodb:")
    statements = bucket_source_statements("media", "", [QueueRef("cn-north-1", "1", "q")], "ferry-sync-media-x")
    assert {r for s in statements for r in s["Resource"] if r != "*"} == {
        "arn:aws-cn:s3:::media", "arn:aws-cn:s3:::media/*", "arn:aws-cn:sqs:cn-north-1:1:q",
        "arn:aws-cn:events:cn-north-1:1:rule/ferry-sync-media-x", "arn:aws-cn:events:cn-north-1:1:rule/ferry-sync-*"}
