"""A pair's event queue, and applying what it holds: the durable middle of a bucket's live sync.

The queue (with a dead-letter queue behind it) is durable: events keep arriving while the bulk copy
runs and are drained after it. How the bucket's events reach it (a notification entry or an
EventBridge rule, beside every existing consumer) is ferry/s3/routes.py's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from ferry.errors import BadInput
from ferry.names import pair_name
from ferry.s3 import routes
from lambdas import s3_handler

log = logging.getLogger(__name__)

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


def ensure_queue(sqs, source_bucket: str, name: str, dead_letter_name: str, rule_name: str | None = None
                 ) -> tuple[str, str]:
    """The event queue (and its dead-letter queue), accepting messages from this bucket's
    notifications and from the pair's EventBridge rule (`rule_name`) only. Idempotent: a rerun finds
    both in place (three requests; the queue's own ARN is its dead-letter queue's with the name
    changed, both living in one account and region)."""
    dead_url = sqs.create_queue(QueueName=dead_letter_name, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    arn = f"{dead_arn.rsplit(':', 1)[0]}:{name}"
    account = arn.split(":")[4]  # bucket names are global: the bucket must also be this account's
    statements = [{"Sid": "BucketNotifications", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                   "Action": "sqs:SendMessage", "Resource": arn,
                   "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{source_bucket}"},
                                 "StringEquals": {"aws:SourceAccount": account}}}]
    if rule_name:
        statements.append({"Sid": "EventBridgeRule", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                           "Action": "sqs:SendMessage", "Resource": arn,
                           "Condition": {"ArnEquals": {"aws:SourceArn": routes.rule_arn(arn, rule_name)}}})
    attributes = {"Policy": json.dumps({"Version": "2012-10-17", "Statement": statements}),
                  "MessageRetentionPeriod": "1209600", "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
                  "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(MAX_RECEIVES)})}
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as error:  # there with other attributes (an older Ferry's): bring them up to date
        if error.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url, arn


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


KEY_TAG = "ferry:target-kms-key"  # on a pair's queue: the --target-kms-key its migration was made with


def remember_target_key(sqs, queue_url: str, key: str | None) -> None:
    """The key copies of this pair are encrypted with (none: untagged), for `ferry sync bucket` and
    `ferry finish bucket`, which apply events as the migration was made."""
    if key:
        sqs.tag_queue(QueueUrl=queue_url, Tags={KEY_TAG: key})
    else:
        sqs.untag_queue(QueueUrl=queue_url, TagKeys=[KEY_TAG])


def recorded_target_key(sqs, queue_url: str) -> str | None:
    return sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(KEY_TAG) or None


def hold_queue(sqs, queue_url: str, plan_name: str) -> None:
    """This direction's live sync must not run (a plan has switched the other way): the queue says so."""
    sqs.tag_queue(QueueUrl=queue_url, Tags={HOLD_TAG: plan_name})


def release_queue(sqs, queue_url: str) -> None:
    sqs.untag_queue(QueueUrl=queue_url, TagKeys=[HOLD_TAG])


def held_by(sqs, queue_url: str) -> str | None:
    """The plan that stopped this direction's live sync, if one did."""
    return sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(HOLD_TAG) or None


def check_not_held(sqs, queue_url: str, source: str, target: str) -> None:
    plan = held_by(sqs, queue_url)
    if plan:
        raise BadInput(f"live sync of bucket {source} into {target} is stopped by plan {plan!r} (it has switched the "
                       "service the other way): run 'ferry sync plan PLAN' for the direction that runs now")


def route_to_queue(sqs, s3, events, source: str, target: str, prefix: str, mode: routes.EventsMode = "auto",
                   respect_hold: bool = True) -> tuple[str, str, routes.Route]:
    """The pair's queue in place, remembering its prefix, and the bucket's events routed to it
    (ferry/s3/routes.py): (queue URL, queue ARN, the route). `respect_hold`: refuse a direction a
    plan has stopped (a cutover itself captures a direction's events before letting it apply them)."""
    name, dead_letter = queue_names(source, target)
    url, arn = ensure_queue(sqs, source, name, dead_letter, routes.route_name(source, target))
    if respect_hold:
        check_not_held(sqs, url, source, target)
    remember_prefix(sqs, url, prefix)
    return url, arn, routes.route(s3, events, source, target, prefix, arn, mode)


def queue_is_empty(sqs, queue_url: str) -> bool:
    """No message waiting, in flight or delayed (a message sent with a delay is on its way)."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return all(int(attributes[name]) == 0 for name in attributes)


DEFAULT_SETTLE_SECONDS = 5.0
LAG_TAG, LAG_RECORD_EVERY_SECONDS = s3_handler.LAG_TAG, s3_handler.LAG_RECORD_EVERY_SECONDS  # the Lambda's too


MAX_LAGS_KEPT = 100_000  # batches whose lag a drain keeps for its percentiles


def settle_seconds() -> float:
    """How long after a catch-up drain began an event of a change made before it may still be on its
    way (S3 delivers events within seconds, rarely longer): FERRY_EVENT_SETTLE_SECONDS, default 5."""
    value = os.environ.get("FERRY_EVENT_SETTLE_SECONDS", "")
    if not value:
        return DEFAULT_SETTLE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= 3600:
        raise BadInput(f"FERRY_EVENT_SETTLE_SECONDS must be a number of seconds from 0 to 3600, got {value!r}")
    return seconds


def record_lag(sqs, queue_url: str, lag_seconds: float) -> None:
    """Leave the lag just measured on the queue, for `ferry status bucket` (read by recorded_lag).
    The lag is for people watching: failing to record it stops nothing."""
    try:
        sqs.tag_queue(QueueUrl=queue_url, Tags={LAG_TAG: f"{lag_seconds:.3f}@{time.time():.0f}"})
    except (ClientError, BotoCoreError) as error:
        log.warning("could not record the lag on the event queue: %s", type(error).__name__)


def recorded_lag(sqs, queue_url: str) -> tuple[float, float] | None:
    """(lag in seconds, seconds since it was measured), as the last applier recorded it; None if none did."""
    value = sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(LAG_TAG)
    try:
        lag, at = value.split("@")
        return float(lag), max(0.0, time.time() - float(at))
    except (AttributeError, ValueError):
        return None


def one_by_one(apply):
    """A per-message `apply(body)` as drain_queue takes it: each message of a batch applied in turn,
    one that raises failing alone."""
    def apply_batch(bodies: list[str]) -> list[bool]:
        done = []
        for body in bodies:
            try:
                apply(body)
                done.append(True)
            except Exception:  # left on the queue: retried, then dead-lettered by the redrive policy
                done.append(False)
        return done
    return apply_batch


def drain_queue(sqs, queue_url: str, apply, idle_seconds: float | None = 1.0, stop=None,
                until_caught_up: bool = False, progress=None) -> dict:
    """Receive event messages and `apply(bodies)` each batch (a list of whether each applied: see
    one_by_one); a message is deleted only once applied, a failed one made visible again soon.

    Stops after `idle_seconds` without messages and with none in flight or delayed (None: only when
    `stop` is set), or, with `until_caught_up`, once every message sent before the drain began has
    been applied (while writes go on, the queue is never idle; what comes later is the poller's), and
    not before settle_seconds() after it began: an event of a change made just before is then no
    longer in transit.

    Messages are received for RECEIVE_VISIBILITY_SECONDS, not the queue's long default (which is
    there for the Lambda): an answer lost on the way back (the connection dropped after SQS acted)
    leaves its messages in flight, unseen by anyone, until then; so the drain does not call the
    queue idle while messages are in flight, and they come back soon. A batch that takes longer to
    apply than that is received again and applied again, which is harmless: `apply` makes the
    target match the source as it is then.

    Each batch's count and lag (from an event's delivery to the queue until it is applied) go to
    `progress(messages, lag_seconds)` and, every LAG_RECORD_EVERY_SECONDS, onto the queue (record_lag);
    the counts returned end with the lag's p50, p99 and max over the drain's batches.
    """
    counts = {"messages": 0, "failed": 0, "lag_seconds": 0.0}  # lag: the last batch's oldest event, when applied
    lags: list[float] = []  # every batch's, for the percentiles the drain ends with
    began = time.time()
    settled_at = began + (settle_seconds() if until_caught_up else 0.0)
    idle_since, lag_recorded = time.monotonic(), time.monotonic()
    while not (stop and stop.is_set()):
        # A catch-up drain short-polls: an empty answer plus an empty queue means done, with no wait.
        settling = until_caught_up and time.time() < settled_at
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
                                       WaitTimeSeconds=0 if until_caught_up and not settling else 1,
                                       AttributeNames=["SentTimestamp"])
        messages = response.get("Messages", [])
        if not messages:
            if until_caught_up and not settling and queue_is_empty(sqs, queue_url):
                break
            idle_for = time.monotonic() - idle_since
            if idle_seconds is not None and idle_for >= idle_seconds and not settling:
                # in flight: maybe a receive of ours whose answer was lost, back within the receive
                # visibility; held longer than that, they are another consumer's (the Lambda's)
                if queue_is_empty(sqs, queue_url) or idle_for >= idle_seconds + RECEIVE_VISIBILITY_SECONDS + 5:
                    break
            continue
        idle_since = time.monotonic()
        done = []
        for message, applied in zip(messages, apply([m["Body"] for m in messages])):
            if applied:
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
                continue
            counts["failed"] += 1  # left on the queue: retried, then dead-lettered by the redrive policy
            try:
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=RETRY_FAILED_AFTER_SECONDS)
            except ClientError:  # its receive visibility ran out already: it is back on the queue
                pass
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
        sent = [int(m["Attributes"]["SentTimestamp"]) / 1000 for m in messages]
        counts["messages"] += len(done)
        counts["lag_seconds"] = max(0.0, time.time() - min(sent))
        if len(lags) < MAX_LAGS_KEPT:
            lags.append(counts["lag_seconds"])
        if progress:
            progress(len(done), counts["lag_seconds"])
        if time.monotonic() - lag_recorded >= LAG_RECORD_EVERY_SECONDS:
            record_lag(sqs, queue_url, counts["lag_seconds"])
            lag_recorded = time.monotonic()
        if until_caught_up and min(sent) > began and time.time() >= settled_at:
            break
    if counts["messages"]:
        record_lag(sqs, queue_url, counts["lag_seconds"])
    ordered = sorted(lags)
    for name, share in (("lag_p50_seconds", 0.5), ("lag_p99_seconds", 0.99), ("lag_max_seconds", 1.0)):
        counts[name] = round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3) if ordered else None
    return counts


def delete_queues(sqs, source: str, target: str) -> tuple[list[str], list[str], int]:
    """Delete the pair's queue, then its dead-letter queue, once nothing is left in them: (removed,
    kept and why, dead letters). A queue holding messages stays (its changes are not applied yet);
    a dead letter is a change that never applied: its queue stays to be looked at."""
    removed, kept, dead = [], [], 0
    name, dead_letter = queue_names(source, target)
    for queue in (name, dead_letter):  # the queue first: its redrive points at the dead-letter queue
        try:
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        except ClientError as error:
            if "NonExistentQueue" not in error.response["Error"]["Code"]:
                raise
            continue
        if queue == dead_letter and (dead := waiting(sqs, url)):
            kept.append(f"queue {queue}: {dead} dead letters (changes that never applied: their keys may differ)")
            continue
        if queue == name and not queue_is_empty(sqs, url):
            kept.append(f"queue {queue}: events not applied yet (held by another consumer, or arrived late): "
                        "rerun 'ferry finish bucket'")
            continue
        if queue == dead_letter and kept:  # the queue is kept: so is the dead-letter queue it redrives to
            kept.append(f"queue {queue}: the queue it serves is kept")
            continue
        sqs.delete_queue(QueueUrl=url)
        removed.append(f"queue {queue}")
    return removed, kept, dead


def waiting(sqs, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(value) for value in attributes.values())


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
    events_routed: bool  # the source bucket's events reach Ferry's queue
    events_via: str | None  # "notification" (an entry of the bucket's configuration), "eventbridge", or None
    pending: int  # events waiting in the queue
    in_flight: int  # received by a poller or the Lambda, not yet applied
    dead_letters: int  # events that failed MAX_RECEIVES times: their keys may differ until re-synced
    lambda_mappings: list[str]  # states of Lambda event source mappings on the queue (empty: poller)
    lag_seconds: float | None  # from an event's arrival in the queue to its apply, as last measured (None: never)
    lag_measured_seconds_ago: float | None  # when the poller or the Lambda last measured it


def sync_status(sqs, s3, events, lambda_client, source: str, target: str) -> BucketSyncStatus:
    """The live sync of `source` into `target`, read without changing anything."""
    name, dead_letter = queue_names(source, target)
    url = find_queue(sqs, source, target)
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts + ["QueueArn"])["Attributes"]
    dead_url = sqs.get_queue_url(QueueName=dead_letter)["QueueUrl"]
    dead = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=counts)["Attributes"]
    way = routes.routed_way(s3, events, source, target, queue["QueueArn"])
    mappings = lambda_client.list_event_source_mappings(EventSourceArn=queue["QueueArn"]).get("EventSourceMappings", [])
    lag = recorded_lag(sqs, url)
    return BucketSyncStatus(
        source=source, target=target, queue=name, events_routed=way is not None, events_via=way,
        pending=int(queue[counts[0]]), in_flight=int(queue[counts[1]]),
        dead_letters=sum(int(dead[c]) for c in counts), lambda_mappings=[m["State"] for m in mappings],
        lag_seconds=lag[0] if lag else None, lag_measured_seconds_ago=round(lag[1], 1) if lag else None)
