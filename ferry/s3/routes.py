"""How a bucket's object events reach a pair's queue, beside every consumer already there, untouched.

Two ways (`--events`), each named for the pair, so two migrations of one source never take each
other's events:
- notification: an entry of the bucket's notification configuration (Id `ferry-sync-SOURCE-TARGET`),
  filtered to the migration's prefix. The configuration is read and the entry added; nothing else in
  it changes. S3 refuses a configuration in which two entries overlap: a shared event type (a
  wildcard covers its family) and key filters that can both match one key (each prefix a prefix of
  the other or missing, each suffix a suffix of the other or missing). `overlapping` judges that.
- eventbridge: the bucket's EventBridge delivery turned on (`EventBridgeConfiguration`, which leaves
  every entry as it is) and an EventBridge rule of the pair's own (same name) on the default bus
  sending this bucket's object events under the prefix to the queue.
- auto (default): notification when the entry overlaps nothing already there, else eventbridge. A
  pair already routed keeps its way.

Removing a pair's route (`unroute`) removes its entry or its rule, and EventBridge delivery only if
Ferry turned it on and nothing else may use it (no other Ferry rule of the bucket, no other rule on
the default bus that can take its events). Whether Ferry turned it on is a tag on each Ferry rule of
the bucket, passed from rule to rule: moto's server does not return `EventBridgeConfiguration` from
the get call, and a rule outlives the run that made it. A route writes delivery on after its rule is
in place, and an unroute that turned it off lists the rules again after: so one pair ending while
another of the bucket is routed leaves delivery on, in either order.

The events routed: created (puts, copies, multipart uploads: a metadata-only copy too), removed
(deletes and delete markers), lifecycle expirations, tag changes and ACL changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from botocore.exceptions import ClientError

from ferry.errors import BadInput, CannotContinue
from ferry.names import pair_name

EventsMode = Literal["auto", "notification", "eventbridge"]
NOTIFICATION, EVENTBRIDGE = "notification", "eventbridge"
EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*", "s3:ObjectTagging:*",
          "s3:ObjectAcl:Put"]
DETAIL_TYPES = ["Object Created", "Object Deleted", "Object Tags Added", "Object Tags Deleted", "Object ACL Updated"]
LEGACY_ID = "ferry-live-sync"  # the one entry Id every pair used before routes were the pair's own
TURNED_ON_TAG = "ferry:turned-on-eventbridge"  # on Ferry's rules: Ferry turned the bucket's delivery on
BUCKET_TAG = "ferry:bucket"
TARGET_ID = "ferry-queue"
CONFIGURATION_KINDS = (("QueueConfigurations", "QueueArn"), ("TopicConfigurations", "TopicArn"),
                       ("LambdaFunctionConfigurations", "LambdaFunctionArn"))


def route_name(source: str, target: str) -> str:
    """The pair's notification entry Id and EventBridge rule name (rule names: 64 of [.-_A-Za-z0-9])."""
    return pair_name(source, target, 64)


def rule_arn(queue_arn: str, name: str) -> str:
    """The pair's rule ARN, in the queue's partition, region and account (the rule lives beside it)."""
    partition, _, region, account = queue_arn.split(":")[1:5]
    return f"arn:{partition}:events:{region}:{account}:rule/{name}"


@dataclass(frozen=True)
class Route:
    way: str  # NOTIFICATION or EVENTBRIDGE
    added: bool  # put in place now (False: it was there already)
    turned_on_eventbridge: bool = False  # this call turned the bucket's EventBridge delivery on


# --- S3's overlap rule ---------------------------------------------------------------------------

def _types_overlap(a: str, b: str) -> bool:
    """`s3:ObjectCreated:*` covers `s3:ObjectCreated:Put`; different families never overlap."""
    a_parts, b_parts = a.split(":"), b.split(":")
    if a_parts[:2] != b_parts[:2]:
        return False
    a_kind, b_kind = (a_parts[2] if len(a_parts) > 2 else "*"), (b_parts[2] if len(b_parts) > 2 else "*")
    return "*" in (a_kind, b_kind) or a_kind == b_kind


def _key_filter(entry: dict) -> tuple[str, str]:
    rules = {r["Name"].lower(): r["Value"] for r in entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])}
    return rules.get("prefix", ""), rules.get("suffix", "")


def overlap(a: dict, b: dict) -> bool:
    """Whether S3 would refuse two notification entries side by side: a shared event type, and key
    filters that can both match one key."""
    if not any(_types_overlap(x, y) for x in a.get("Events", []) for y in b.get("Events", [])):
        return False
    (a_prefix, a_suffix), (b_prefix, b_suffix) = _key_filter(a), _key_filter(b)
    return ((a_prefix.startswith(b_prefix) or b_prefix.startswith(a_prefix))
            and (a_suffix.endswith(b_suffix) or b_suffix.endswith(a_suffix)))


def entries(configuration: dict) -> list[tuple[str, dict]]:
    """Every notification entry as (its destination's ARN, the entry)."""
    return [(entry[arn_key], entry) for kind, arn_key in CONFIGURATION_KINDS for entry in configuration.get(kind, [])]


def notification_entry(source: str, target: str, queue_arn: str, prefix: str) -> dict:
    """The pair's entry: its queue, the events Ferry applies, only keys under the prefix."""
    entry = {"Id": route_name(source, target), "QueueArn": queue_arn, "Events": list(EVENTS)}
    if prefix:
        entry["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    return entry


def overlapping(configuration: dict, wanted: dict) -> list[str]:
    """Ids (or destinations) of entries other than the pair's own that overlap `wanted`."""
    return [entry.get("Id") or arn for arn, entry in entries(configuration)
            if not _is_ours(entry, wanted["QueueArn"]) and overlap(entry, wanted)]


def _is_ours(entry: dict, queue_arn: str) -> bool:
    """The pair's own entry: it sends to the pair's queue (known by name: the name is the pair's)."""
    return "QueueArn" in entry and entry["QueueArn"].rsplit(":", 1)[-1] == queue_arn.rsplit(":", 1)[-1]


def _same_entry(found: dict, wanted: dict) -> bool:
    rules = lambda entry: sorted((r["Name"].lower(), r["Value"]) for r in  # noqa: E731
                                 entry.get("Filter", {}).get("Key", {}).get("FilterRules", []))
    return (found.get("Id") == wanted["Id"] and found["QueueArn"] == wanted["QueueArn"]
            and sorted(found.get("Events", [])) == sorted(wanted["Events"]) and rules(found) == rules(wanted))


def refusal(bucket: str, clashes: list[str]) -> str:
    return (f"bucket {bucket!r} already sends the object events Ferry needs to {', '.join(clashes)}, and S3 allows "
            "one destination per event type: rerun with --events eventbridge (or auto, the default), which "
            "routes them through the bucket's EventBridge and leaves that configuration untouched")


# --- reading the bucket's configuration and Ferry's rules ----------------------------------------

def read_configuration(s3, bucket: str) -> dict:
    configuration = s3.get_bucket_notification_configuration(Bucket=bucket)
    configuration.pop("ResponseMetadata", None)
    return configuration


def _rules(events, name_prefix: str | None = None) -> list[dict]:
    found, request = [], {"NamePrefix": name_prefix} if name_prefix else {}
    while True:
        page = events.list_rules(**request)
        found += page.get("Rules", [])
        if not page.get("NextToken"):
            return found
        request["NextToken"] = page["NextToken"]


def _takes_bucket(rule: dict, bucket: str) -> bool:
    """Whether a rule's pattern can match S3 events of `bucket`: Ferry must not turn off what it may
    use. A scheduled rule (no pattern) takes no events; a pattern whose source or bucket filter is
    not a plain list of names (prefix, anything-but...) is taken to match."""
    if not rule.get("EventPattern"):
        return False
    try:
        pattern = json.loads(rule["EventPattern"])
    except ValueError:
        return True

    def may_match(values, wanted: str) -> bool:
        return values is None or wanted in values or not all(isinstance(v, str) for v in values)

    return (may_match(pattern.get("source"), "aws.s3")
            and may_match(pattern.get("detail", {}).get("bucket", {}).get("name"), bucket))


def ferry_rules(events, bucket: str, except_name: str | None = None) -> list[dict]:
    """Ferry's rules routing `bucket`'s events (other pairs'), found by name and pattern."""
    return [rule for rule in _rules(events, "ferry-sync-") if rule["Name"] != except_name
            and rule.get("EventPattern") and _takes_bucket(rule, bucket)
            and bucket in json.loads(rule["EventPattern"]).get("detail", {}).get("bucket", {}).get("name", [])]


def _turned_on_by_ferry(events, rules: list[dict]) -> bool:
    return any(tag["Key"] == TURNED_ON_TAG and tag["Value"] == "true"
               for rule in rules for tag in events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags", []))


def _our_rule(events, name: str) -> dict | None:
    try:
        return events.describe_rule(Name=name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


WRITE_ATTEMPTS = 3


class Overlaps(Exception):
    """The pair's entry would overlap an entry now in the configuration (see route)."""


def _entry_keys(configuration: dict) -> list[tuple]:
    return sorted((entry.get("Id", ""), arn, tuple(sorted(entry.get("Events", [])))) for arn, entry in
                  entries(configuration))


def _set_delivery(s3, events, bucket: str, on: bool) -> None:
    """Turn the bucket's EventBridge delivery on or off, every entry of its configuration kept."""
    _update_configuration(s3, events, bucket, lambda configuration: configuration, eventbridge=on)


def _update_configuration(s3, events, bucket: str, change, eventbridge: bool | None = None) -> bool:
    """Apply `change(configuration)` (a new configuration, or None: nothing to write) to the bucket's
    notification configuration, with EventBridge delivery kept as it was (`eventbridge` None: on if
    the get says so or a Ferry rule of the bucket relies on it: moto's get never says) or as asked.

    S3 has no conditional write of a configuration: the window between the read and the write is
    kept to those two requests (what the write needs is read before), and the configuration is read
    again after the write: if the change does not hold (another writer's put landed after Ferry's),
    it is made again on what is there now. Returns whether it wrote."""
    relied_on = bool(ferry_rules(events, bucket)) if eventbridge is None else eventbridge
    for _ in range(WRITE_ATTEMPTS):
        current = read_configuration(s3, bucket)
        wanted = change({k: v for k, v in current.items()})
        if wanted is None:
            return False
        on = eventbridge if eventbridge is not None else "EventBridgeConfiguration" in current or relied_on
        wanted = {k: v for k, v in wanted.items() if k != "EventBridgeConfiguration"}
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={**wanted, **({"EventBridgeConfiguration": {}} if on else {})})
        if _entry_keys(read_configuration(s3, bucket)) == _entry_keys(wanted):
            return True
    raise CannotContinue(f"the notification configuration of bucket {bucket!r} kept changing while Ferry wrote "
                         "it: rerun the same command")


# --- routing and unrouting -----------------------------------------------------------------------

def choose_way(mode: EventsMode, configuration: dict, wanted: dict, routed_by: str | None) -> str:
    """The way events will reach the queue: as asked; with auto, the way the pair is already routed
    (as long as its entry, as it is wanted now, still overlaps nothing), else a notification entry
    when it overlaps nothing already there, else EventBridge."""
    if mode != "auto":
        return mode
    if routed_by == EVENTBRIDGE:
        return routed_by
    return EVENTBRIDGE if overlapping(configuration, wanted) else NOTIFICATION


def routed_way(s3, events, source: str, target: str, queue_arn: str, configuration: dict | None = None) -> str | None:
    """How the pair's events reach its queue now: NOTIFICATION, EVENTBRIDGE or None (not routed: no
    entry, or a rule that is disabled, sends elsewhere, or whose bucket's delivery is off, where the
    get call tells; moto's never does)."""
    configuration = read_configuration(s3, source) if configuration is None else configuration
    if any(_is_ours(entry, queue_arn) for _, entry in entries(configuration)):
        return NOTIFICATION
    rule = _our_rule(events, route_name(source, target)) if events is not None else None
    if rule is None or rule.get("State") != "ENABLED":
        return None
    if queue_arn not in [t["Arn"] for t in events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])]:
        return None
    if "EventBridgeConfiguration" not in configuration and _tags(events, rule["Arn"]).get(TURNED_ON_TAG) != "true":
        return None  # on before Ferry (a customer's), and now off
    return EVENTBRIDGE


def route(s3, events, source: str, target: str, prefix: str, queue_arn: str, mode: EventsMode = "auto") -> Route:
    """Route the bucket's object events (under `prefix`) to the pair's queue, the way `mode` says.
    Idempotent; a pair routed the other way is moved (the new route first, then the old one
    removed: for a moment both deliver, which is harmless, events being hints)."""
    configuration = read_configuration(s3, source)
    wanted = notification_entry(source, target, queue_arn, prefix)
    has_entry = any(_is_ours(entry, queue_arn) for _, entry in entries(configuration))
    rule = None if has_entry else _our_rule(events, wanted["Id"])
    way = choose_way(mode, configuration, wanted, NOTIFICATION if has_entry else EVENTBRIDGE if rule else None)
    if way == NOTIFICATION:
        try:
            routed = _add_entry(s3, events, source, wanted)
        except Overlaps as clashes:  # an entry came since the read above: auto takes EventBridge
            if mode != "auto":
                raise BadInput(refusal(source, clashes.args[0])) from None
            return route(s3, events, source, target, prefix, queue_arn, EVENTBRIDGE)
        if rule is not None:  # moved from EventBridge
            _remove_rule(s3, events, source, wanted["Id"])
        return routed
    routed = _add_rule(s3, events, source, prefix, wanted, configuration,
                       _our_rule(events, wanted["Id"]) if has_entry else rule)
    if has_entry:  # moved from a notification entry
        _remove_entry(s3, events, source, queue_arn)
    return routed


def _add_entry(s3, events, source: str, wanted: dict) -> Route:
    """The pair's entry in the configuration (its older one, with another prefix, fewer events or
    the legacy Id, replaced). Raises Overlaps if another entry overlaps it."""
    def add(configuration: dict) -> dict | None:
        queues = configuration.get("QueueConfigurations", [])
        if any(_same_entry(q, wanted) for q in queues):
            return None
        if clashes := overlapping(configuration, wanted):
            raise Overlaps(clashes)
        configuration["QueueConfigurations"] = [q for q in queues if not _is_ours(q, wanted["QueueArn"])] + [wanted]
        return configuration

    return Route(NOTIFICATION, added=_update_configuration(s3, events, source, add))


def event_pattern(source: str, prefix: str) -> dict:
    detail: dict = {"bucket": {"name": [source]}}
    if prefix:
        detail["object"] = {"key": [{"prefix": prefix}]}
    return {"source": ["aws.s3"], "detail-type": DETAIL_TYPES, "detail": detail}


def _tags(events, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=arn).get("Tags", [])}


def _add_rule(s3, events, source: str, prefix: str, wanted: dict, configuration: dict, rule: dict | None) -> Route:
    """The pair's rule in place (tagged with whether Ferry turned delivery on), its queue as target,
    then the bucket's EventBridge delivery on if it was not."""
    name, pattern = wanted["Id"], event_pattern(source, prefix)
    others = ferry_rules(events, source, except_name=name)
    # On AWS the get says whether delivery is on; moto's never does, so there another Ferry rule of the
    # bucket stands for it. The pair's own rule does not: a run killed before its configuration write
    # left the rule, and delivery off.
    delivery_on = "EventBridgeConfiguration" in configuration or bool(others)
    tags = _tags(events, rule["Arn"]) if rule is not None else {}
    if tags.get(TURNED_ON_TAG) == "true" or not delivery_on:  # Ferry turned it on, or turns it on now
        turned_on = True
    elif TURNED_ON_TAG in tags:
        turned_on = False
    else:  # a new rule: inherit what the bucket's other Ferry rules know
        turned_on = _turned_on_by_ferry(events, others)
    same = rule is not None and json.loads(rule.get("EventPattern") or "{}") == pattern and rule.get("State") == "ENABLED"
    arn = rule["Arn"] if same else events.put_rule(
        Name=name, EventPattern=json.dumps(pattern), State="ENABLED",
        Description=f"Ferry live sync: object events of {source} to its queue")["RuleArn"]
    if tags.get(TURNED_ON_TAG) != str(turned_on).lower():
        events.tag_resource(ResourceARN=arn, Tags=[{"Key": TURNED_ON_TAG, "Value": str(turned_on).lower()},
                                                   {"Key": BUCKET_TAG, "Value": source}])
    targets = events.list_targets_by_rule(Rule=name).get("Targets", [])
    if [t["Arn"] for t in targets] != [wanted["QueueArn"]]:
        answer = events.put_targets(Rule=name, Targets=[{"Id": TARGET_ID, "Arn": wanted["QueueArn"]}])
        if answer.get("FailedEntryCount"):
            failed = answer["FailedEntries"][0]
            raise CannotContinue(f"EventBridge refused the queue as target of rule {name} "
                                 f"({failed.get('ErrorCode')}): rerun the same command")
    # Last, the rule being ready for the first event: delivery on, unless the get says it is. Also
    # when it was judged on from another pair's rule (moto), since that pair may end meanwhile and
    # turn it off having seen no rule but its own: whichever of the two writes last, the rule the
    # other pair lists after its write is there (_remove_rule), so delivery ends on.
    if "EventBridgeConfiguration" not in read_configuration(s3, source):
        _set_delivery(s3, events, source, on=True)
    return Route(EVENTBRIDGE, added=not same, turned_on_eventbridge=not delivery_on)


def _remove_entry(s3, events, source: str, queue_arn: str) -> bool:
    def remove(configuration: dict) -> dict | None:
        queues = configuration.get("QueueConfigurations", [])
        kept = [q for q in queues if not _is_ours(q, queue_arn)]
        if len(kept) == len(queues):
            return None
        configuration["QueueConfigurations"] = kept
        return configuration

    return _update_configuration(s3, events, source, remove)


@dataclass
class Unrouted:
    removed: list[str]  # what the pair's routing had added, now gone
    kept: list[str]  # what stays, and why


def _other_rules(events, source: str, name: str) -> list[str]:
    """The names of the rules on the default bus, other than `name`, that may take the bucket's events."""
    return [r["Name"] for r in _rules(events) if r["Name"] != name and _takes_bucket(r, source)]


def _remove_rule(s3, events, source: str, name: str) -> Unrouted:
    """Remove the pair's rule; then EventBridge delivery if Ferry turned it on and nothing else may use it."""
    rule = _our_rule(events, name)
    if rule is None:
        return Unrouted([], [])
    turned_on = _tags(events, rule["Arn"]).get(TURNED_ON_TAG) == "true"
    others = _other_rules(events, source, name)
    done = Unrouted([], [])
    if not turned_on:
        done.kept.append(f"EventBridge delivery of bucket {source}: on before Ferry routed it")
    elif others:
        done.kept.append(f"EventBridge delivery of bucket {source}: rules {', '.join(others)} may use it")
    else:  # before the rule goes: the rule is the record that Ferry turned delivery on
        _set_delivery(s3, events, source, on=False)
        # Listed again after the write: a pair routed meanwhile (its rule put before its own write of
        # delivery on, which may have come before this one) keeps its events.
        if others := _other_rules(events, source, name):
            _set_delivery(s3, events, source, on=True)
            done.kept.append(f"EventBridge delivery of bucket {source}: rules {', '.join(others)} may use it")
        else:
            done.removed.append(f"EventBridge delivery of bucket {source} (Ferry had turned it on)")
    targets = [t["Id"] for t in events.list_targets_by_rule(Rule=name).get("Targets", [])]
    if targets:
        events.remove_targets(Rule=name, Ids=targets)
    events.delete_rule(Name=name)
    done.removed.insert(0, f"EventBridge rule {name}")
    return done


def unroute(s3, events, source: str, target: str, queue_arn: str) -> Unrouted:
    """Remove only what the pair's routing added: its notification entry or its rule (and EventBridge
    delivery, if Ferry turned it on and nothing else may use it). A rerun finds nothing left to remove."""
    entry = _remove_entry(s3, events, source, queue_arn)
    done = _remove_rule(s3, events, source, route_name(source, target))
    return Unrouted(([f"notification entry of bucket {source}"] if entry else []) + done.removed, done.kept)
