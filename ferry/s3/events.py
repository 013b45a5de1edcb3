"""Route a bucket's object events to an SQS queue, without disturbing anyone else's notifications.

The queue (with a dead-letter queue behind it) is durable: events keep arriving while the bulk copy
runs and are drained after it. The bucket's notification configuration is read first and Ferry's
queue configuration added to it; nothing existing is removed or changed. S3 allows one destination
per event type, so when an existing configuration already takes object-created or object-removed
events, Ferry stops with a one-line error saying so and how to proceed, instead of failing obscurely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from ferry.errors import BadInput, CannotContinue
from ferry.names import pair_name

CONFIGURATION_ID = "ferry-live-sync"
EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
MAX_RECEIVES = 5
# At least the bucket Lambda's timeout (AWS refuses the mapping otherwise); 6x it, as AWS advises. A
# poller that fails to apply a message makes it visible again at once instead (drain_queue).
VISIBILITY_TIMEOUT_SECONDS = 6 * 300
RETRY_FAILED_AFTER_SECONDS = 5
RECEIVE_VISIBILITY_SECONDS = 30  # how long a poller's received messages stay hidden (see drain_queue)


def queue_names(source: str, target: str) -> tuple[str, str]:
    """The pair's event queue and its dead-letter queue (SQS: 80 characters of [A-Za-z0-9_-])."""
    base = pair_name(source, target, 76)
    return base, f"{base}-dlq"


def ensure_queue(sqs, source_bucket: str, name: str, dead_letter_name: str) -> tuple[str, str]:
    """The event queue (and its dead-letter queue), accepting messages from this bucket only.
    Idempotent: a rerun finds both in place (three requests; the queue's own ARN is its
    dead-letter queue's with the name changed, both living in one account and region)."""
    dead_url = sqs.create_queue(QueueName=dead_letter_name, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    arn = f"{dead_arn.rsplit(':', 1)[0]}:{name}"
    account = arn.split(":")[4]  # bucket names are global: the bucket must also be this account's
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": arn, "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{source_bucket}"},
                                       "StringEquals": {"aws:SourceAccount": account}}}]}
    attributes = {"Policy": json.dumps(policy), "MessageRetentionPeriod": "1209600",
                  "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
                  "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(MAX_RECEIVES)})}
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as error:  # there with other attributes (an older Ferry's): bring them up to date
        if error.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url, arn


def _family(event: str) -> str:
    parts = event.split(":")
    return ":".join(parts[:2]) if len(parts) > 1 else event


def conflicting(configuration: dict) -> list[str]:
    """Ids (or targets) of existing configurations that already take object-created/removed events."""
    ours = {_family(e) for e in EVENTS}
    found = []
    for kind, target_key in (("QueueConfigurations", "QueueArn"), ("TopicConfigurations", "TopicArn"),
                             ("LambdaFunctionConfigurations", "LambdaFunctionArn")):
        for config in configuration.get(kind, []):
            if config.get("Id") == CONFIGURATION_ID:
                continue
            if {_family(e) for e in config.get("Events", [])} & ours:
                found.append(config.get("Id") or config[target_key])
    return found


def clash(bucket: str, configuration: dict) -> str | None:
    """The one-line explanation when the bucket's object events already go somewhere else, or None."""
    clashes = conflicting(configuration)
    if not clashes:
        return None
    return (f"bucket {bucket!r} already sends object-created/removed events to {', '.join(clashes)}, and S3 allows "
            "one destination per event type: turn on EventBridge for the bucket and route those consumers through "
            "it, or remove that configuration, then run again (Ferry leaves existing notifications untouched)")


def ours(queue_arn: str, prefix: str) -> dict:
    """Ferry's entry in a bucket's notification configuration: the pair's queue, and with a prefix
    only the events of keys under it (so no applier ever sees, or dead-letters, another key)."""
    entry = {"Id": CONFIGURATION_ID, "QueueArn": queue_arn, "Events": EVENTS}
    if prefix:
        entry["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    return entry


def _same_entry(found: dict, wanted: dict) -> bool:
    rules = lambda entry: sorted((r["Name"].lower(), r["Value"]) for r in  # noqa: E731
                                 entry.get("Filter", {}).get("Key", {}).get("FilterRules", []))
    return found.get("Id") == wanted["Id"] and found["QueueArn"] == wanted["QueueArn"] and rules(found) == rules(wanted)


def enable_bucket_events(s3, bucket: str, queue_arn: str, prefix: str = "") -> bool:
    """Add Ferry's queue to the bucket's notifications (merging). Returns False if it was already there."""
    configuration = s3.get_bucket_notification_configuration(Bucket=bucket)
    configuration.pop("ResponseMetadata", None)
    queues = configuration.get("QueueConfigurations", [])
    wanted = ours(queue_arn, prefix)
    if any(_same_entry(q, wanted) for q in queues):
        return False
    if problem := clash(bucket, configuration):  # preflight found none: one was added since
        raise CannotContinue(problem)
    configuration["QueueConfigurations"] = [q for q in queues if q.get("Id") != CONFIGURATION_ID] + [wanted]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    return True


def disable_bucket_events(s3, bucket: str, queue_arn: str) -> bool:
    """Remove Ferry's entry for `queue_arn` from the bucket's notifications, and nothing else.
    Returns False if it was not there (a rerun)."""
    configuration = s3.get_bucket_notification_configuration(Bucket=bucket)
    configuration.pop("ResponseMetadata", None)
    queues = configuration.get("QueueConfigurations", [])
    kept = [q for q in queues if not (q.get("Id") == CONFIGURATION_ID and q["QueueArn"] == queue_arn)]
    if len(kept) == len(queues):
        return False
    configuration["QueueConfigurations"] = kept
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    return True


def queue_arn(sqs, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


HOLD_TAG = "ferry:held-by"  # on a pair's queue: the plan that stopped this direction's live sync
PREFIX_TAG = "ferry:prefix"  # on a pair's queue: the prefix its migration was made with


def remember_prefix(sqs, queue_url: str, prefix: str) -> None:
    sqs.tag_queue(QueueUrl=queue_url, Tags={PREFIX_TAG: prefix or "/"})  # a tag value cannot be empty on AWS


def recorded_prefix(sqs, queue_url: str) -> str | None:
    """The prefix the pair was migrated with (None: recorded by no Ferry yet)."""
    value = sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(PREFIX_TAG)
    return None if value is None else ("" if value == "/" else value)


def hold_queue(sqs, queue_url: str, plan_name: str) -> None:
    """This direction's live sync must not run (a plan has switched the other way): the queue says so."""
    sqs.tag_queue(QueueUrl=queue_url, Tags={HOLD_TAG: plan_name})


def release_queue(sqs, queue_url: str) -> None:
    sqs.untag_queue(QueueUrl=queue_url, TagKeys=[HOLD_TAG])


def check_not_held(sqs, queue_url: str, source: str, target: str) -> None:
    plan = sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(HOLD_TAG)
    if plan:
        raise BadInput(f"live sync of bucket {source} into {target} is stopped by plan {plan!r} (it has switched the "
                       "service the other way): run 'ferry sync plan PLAN' for the direction that runs now")


def route_to_queue(sqs, s3, source: str, target: str, prefix: str, respect_hold: bool = True) -> tuple[str, str, bool]:
    """The pair's queue in place, remembering its prefix, and the bucket's events routed to it:
    (queue URL, queue ARN, whether the route was added now). `respect_hold`: refuse a direction a
    plan has stopped (a cutover itself captures a direction's events before letting it apply them)."""
    name, dead_letter = queue_names(source, target)
    url, arn = ensure_queue(sqs, source, name, dead_letter)
    if respect_hold:
        check_not_held(sqs, url, source, target)
    remember_prefix(sqs, url, prefix)
    return url, arn, enable_bucket_events(s3, source, arn, prefix)


def queue_is_empty(sqs, queue_url: str) -> bool:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return all(int(attributes[name]) == 0 for name in attributes)


def drain_queue(sqs, queue_url: str, apply, idle_seconds: float | None = 1.0, stop=None,
                until_caught_up: bool = False) -> dict:
    """Receive event messages and `apply(body)` each; a message is deleted only once applied.

    Stops after `idle_seconds` without messages and with none in flight (None: only when `stop` is
    set), or, with `until_caught_up`, as soon as every message sent before the drain began has been
    applied (while writes go on, the queue is never idle; what comes later is the poller's).

    Messages are received for RECEIVE_VISIBILITY_SECONDS, not the queue's long default (which is
    there for the Lambda): an answer lost on the way back (the connection dropped after SQS acted)
    leaves its messages in flight, unseen by anyone, until then; so the drain does not call the
    queue idle while messages are in flight, and they come back soon. A batch that takes longer to
    apply than that is received again and applied again, which is harmless: `apply` makes the
    target match the source as it is then.
    """
    import time

    counts = {"messages": 0, "failed": 0, "lag_seconds": 0.0}  # lag: the last batch's oldest event, when applied
    began_ms = time.time() * 1000
    idle_since = time.monotonic()
    while not (stop and stop.is_set()):
        # A catch-up drain short-polls: an empty answer plus an empty queue means done, with no wait.
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
                                       WaitTimeSeconds=0 if until_caught_up else 1, AttributeNames=["SentTimestamp"])
        messages = response.get("Messages", [])
        if not messages:
            if until_caught_up and queue_is_empty(sqs, queue_url):
                break
            idle_for = time.monotonic() - idle_since
            if idle_seconds is not None and idle_for >= idle_seconds:
                # in flight: maybe a receive of ours whose answer was lost, back within the receive
                # visibility; held longer than that, they are another consumer's (the Lambda's)
                if queue_is_empty(sqs, queue_url) or idle_for >= idle_seconds + RECEIVE_VISIBILITY_SECONDS + 5:
                    break
            continue
        idle_since = time.monotonic()
        done = []
        for message in messages:
            try:
                apply(message["Body"])
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
            except Exception:  # left on the queue: retried, then dead-lettered by the redrive policy
                counts["failed"] += 1
                try:
                    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                                                  VisibilityTimeout=RETRY_FAILED_AFTER_SECONDS)
                except ClientError:  # its receive visibility ran out already: it is back on the queue
                    pass
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
        counts["messages"] += len(done)
        counts["lag_seconds"] = max(0.0, time.time() - min(int(m["Attributes"]["SentTimestamp"]) for m in messages) / 1000)
        if until_caught_up and all(int(m["Attributes"]["SentTimestamp"]) > began_ms for m in messages):
            break
    return counts


def find_queue(sqs, source: str, target: str) -> str:
    """The URL of the event queue of `source` -> `target`. Only a queue that does not exist means
    "not set up yet": access denied, a network failure or anything else propagates as itself."""
    name = queue_names(source, target)[0]
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if "NonExistentQueue" not in error.response["Error"]["Code"]:
            raise
    raise BadInput(f"no live sync of bucket {source!r} into {target!r}: its event queue {name!r} does not "
                   f"exist (run `ferry bucket {source} {target}` first)")


@dataclass
class BucketSyncStatus:
    """What an operator watching a bucket's live sync needs: is it routed, how far behind, what failed."""
    source: str
    target: str
    queue: str
    events_routed: bool  # the source bucket's notifications include Ferry's queue
    pending: int  # events waiting in the queue
    in_flight: int  # received by a poller or the Lambda, not yet applied
    dead_letters: int  # events that failed MAX_RECEIVES times: their keys may differ until re-synced
    lambda_mappings: list[str]  # states of Lambda event source mappings on the queue (empty: poller)


def sync_status(sqs, s3, lambda_client, source: str, target: str) -> BucketSyncStatus:
    """The live sync of `source` into `target`, read without changing anything."""
    name, dead_letter = queue_names(source, target)
    url = find_queue(sqs, source, target)
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts + ["QueueArn"])["Attributes"]
    dead_url = sqs.get_queue_url(QueueName=dead_letter)["QueueUrl"]
    dead = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=counts)["Attributes"]
    configuration = s3.get_bucket_notification_configuration(Bucket=source)
    routed = any(q.get("Id") == CONFIGURATION_ID and q["QueueArn"] == queue["QueueArn"]
                 for q in configuration.get("QueueConfigurations", []))
    mappings = lambda_client.list_event_source_mappings(EventSourceArn=queue["QueueArn"]).get("EventSourceMappings", [])
    return BucketSyncStatus(
        source=source, target=target, queue=name, events_routed=routed,
        pending=int(queue[counts[0]]), in_flight=int(queue[counts[1]]),
        dead_letters=sum(int(dead[c]) for c in counts), lambda_mappings=[m["State"] for m in mappings])
