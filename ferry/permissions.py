"""Checking up front that each side's credentials may do everything a run will do, so that a missing
permission is exit 2 before any write instead of a failure half-way through.

IAM's policy simulator (iam:SimulatePrincipalPolicy) evaluates the caller's own policies and
permission boundary for each action of the statements `ferry iam-policy` prints (ferry/iam.py), on
the exact ARNs. It does not see organisation SCPs or resource policies, and it needs a permission
of its own (the printed policy grants it on the caller itself). When it cannot answer - not granted,
a root or federated caller, a role with a path, an endpoint without it such as moto's server - the
check is skipped and the log says so; the run's first writes are then ordered so that a denied one
leaves the source untouched (ferry/dynamo/preflight.py). Actions without one ARN to ask about (on
"*", on every index or stream) are left to the run itself.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from ferry.aws import session_for
from ferry.config import AwsSide
from ferry.errors import BadInput, denied_line

# What STS answers for credentials that are no good (expired, deleted, mistyped)
REFUSED_CREDENTIALS = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                       "UnrecognizedClientException", "InvalidAccessKeyId", "AuthFailure"}

log = logging.getLogger(__name__)

# One attempt: a simulator that fails (moto's server answers 500) means "not checked", not a wait
SIMULATOR_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=10, read_timeout=30)


@dataclass(frozen=True)
class Caller:
    account: str
    arn: str  # as STS reports it

    @property
    def principal(self) -> str | None:
        """The IAM principal the simulator evaluates: the user, or the role behind an assumed-role
        session (None for the root user and federated callers, which it cannot simulate)."""
        if match := re.fullmatch(r"arn:(aws[\w-]*):sts::(\d+):assumed-role/([^/]+)/.+", self.arn):
            return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}"
        if match := re.fullmatch(r"arn:(aws[\w-]*):(?:iam|sts)::(\d+):user/(.+)", self.arn):
            return f"arn:{match[1]}:iam::{match[2]}:user/{match[3]}"
        return None


@lru_cache(maxsize=16)
def caller(side: AwsSide) -> Caller:
    """Who a side's credentials are (sts:GetCallerIdentity needs no permission on AWS); asked once
    per process."""
    identity = session_for(side).client("sts", endpoint_url=side.endpoint_url).get_caller_identity()
    return Caller(identity["Account"], identity["Arn"])


def caller_or_none(side: AwsSide, name: str) -> Caller | None:
    """caller(), or None (logged) where STS does not answer: the check is then skipped. Credentials
    STS refuses (expired, deleted, mistyped) are bad input at once."""
    try:
        return caller(side)
    except ClientError as error:
        if error.response["Error"].get("Code") in REFUSED_CREDENTIALS:
            raise BadInput(f"the {name} side: {denied_line(error)}") from None
        log.info("permissions of the %s side not checked up front: STS answered %s", name,
                 error.response["Error"].get("Code"))
        return None
    except (BotoCoreError, ResponseParserError) as error:
        log.info("permissions of the %s side not checked up front: STS answered %s", name, type(error).__name__)
        return None


def self_check_statement(principal: str) -> dict:
    """The statement that lets Ferry run this check: simulate the caller's own policies only."""
    return {"Sid": "CheckOwnPermissions", "Effect": "Allow", "Action": ["iam:SimulatePrincipalPolicy"],
            "Resource": [principal]}


PROBE_KEY = "ferry-permission-check"  # an object name standing for "any object under the prefix"


def checked_resource(resource: str) -> str | None:
    """The concrete ARN the simulator is asked about for a policy resource, or None where no single
    ARN stands for it: "*" (actions without resource-level permissions), a table's indexes and
    streams (a policy may name them one by one). Objects under a prefix: one object there."""
    if resource == "*" or resource.endswith(("/index/*", "/stream/*")):
        return None
    return resource[:-1] + PROBE_KEY if resource.startswith("arn:") and ":s3:::" in resource and resource.endswith(
        "*") else resource


def denied(iam, principal: str, statements: list[dict]) -> list[tuple[str, str]]:
    """(action, resource) for each action of `statements` the simulator refuses `principal`. An answer
    that depends on context the simulator was not given (a condition key) counts as allowed: the
    run will tell."""
    refused: list[tuple[str, str]] = []
    paginator = iam.get_paginator("simulate_principal_policy")
    for statement in statements:
        for resource in filter(None, map(checked_resource, statement["Resource"])):
            for page in paginator.paginate(PolicySourceArn=principal, ActionNames=statement["Action"],
                                           ResourceArns=[resource]):
                refused += [(result["EvalActionName"], resource) for result in page["EvaluationResults"]
                            if result["EvalDecision"] != "allowed" and not result.get("MissingContextValues")]
    return refused


def simulator(side: AwsSide):
    """An IAM client for the simulator, with the side's credentials; None where the side talks to an
    endpoint of its own (moto, LocalStack), which has no policy simulator: building an IAM client
    costs a process up to seconds (its API model is large), for an answer that cannot come."""
    if side.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_IAM") or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    return session_for(side).client("iam", endpoint_url=side.endpoint_url, config=SIMULATOR_CONFIG)


def check_allowed(iam, name: str, who: Caller, statements: list[dict], command: str) -> bool:
    """Raise BadInput naming the first action `who` (the credentials of side `name`) may not take,
    and what fixes it. Returns whether the simulator answered (False: not checked up front; logged).
    `iam` None: no simulator to ask. FERRY_PERMISSION_CHECK=off skips the check, for access a resource
    policy grants (the simulator is not shown those)."""
    if os.environ.get("FERRY_PERMISSION_CHECK", "").lower() in ("off", "0", "false", "no"):
        log.info("permissions of the %s side not checked up front: FERRY_PERMISSION_CHECK=off", name)
        return False
    if iam is None:
        log.info("permissions of the %s side not checked up front: its endpoint has no policy simulator", name)
        return False
    if who.principal is None:
        log.info("permissions of the %s side not checked up front: the simulator cannot evaluate %s", name, who.arn)
        return False
    try:
        refused = denied(iam, who.principal, statements)
    except (BotoCoreError, ClientError, ResponseParserError) as error:  # the last: an answer that is not IAM's
        reason = error.response["Error"].get("Code") if isinstance(error, ClientError) else type(error).__name__
        log.info("permissions of the %s side not checked up front: IAM's policy simulator answered %s", name, reason)
        return False
    if refused:
        action, resource = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise BadInput(f"the {name} side's credentials may not {action} on {resource}{more}, says IAM's policy "
                       f"simulator: grant the policy `{command}` prints, then rerun (access granted by a resource "
                       "policy only: set FERRY_PERMISSION_CHECK=off)")
    return True
