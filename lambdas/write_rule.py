"""May this write land? The one rule for every write Ferry makes to a target table.

Live sync runs from the start of a migration, beside the backfill, so two writers meet on every key:
the backfill, holding an image it scanned at some moment, and live sync, applying the stream's
changes in order. While the backfill can still write ("guarded", until every segment is copied),
live sync marks what it writes:

    ferry:version  (S)     the stream sequence number of the change this item's state came from,
                           zero-padded to 40 digits (sequence numbers have 21 to 40; a number
                           attribute holds 38), so that comparing strings compares numbers
    ferry:deleted  (BOOL)  a tombstone: that change deleted the key (only the key and markers remain)

and writes only over an older state: `attribute_not_exists(ferry:version) OR ferry:version < :seq`.
The backfill writes pages with BatchWriteItem, which takes no conditions, so it keeps its side of
the rule around each page (ferry/dynamo/backfill.py): on a run resuming after live sync marked the
target, it leaves out the keys already marked; after the batch, every key of the page that live sync
(one per pair: the lease) wrote since the page's scan began - noted in memory by the poller in the
backfill's process, or in the state table's journal by the Lambda (lambdas/journal.py) - is written again from a consistent read of the source, tagged with the sequence number live sync wrote
(`apply_change`, guarded), so it lands only where the batch replaced live sync's state.

Why this is exact. Every change made after the stream was enabled is in the stream, and live sync
applies them all, in order per key, at least once; a replayed or duplicated older change carries a
smaller sequence number and is refused, and a delete leaves a tombstone, so no older image of live
sync's own brings a key back. Between the backfill and live sync, for a key on a page whose scan
began at time t: if live sync wrote the key before t, the scan saw that state or a newer one, so
the page's write is at least as new. If live sync wrote it after t, the key was noted before its
write was sent, so when the batch has landed the backfill finds it and writes the source's current
state again under live sync's sequence number: if the batch had replaced live sync's state, this
puts a state at least as new back; if live sync's write landed after the batch (or a newer one did),
the condition refuses it. Every condition is checked by DynamoDB atomically with its write, so this
holds for any interleaving; a kill at any moment leaves the page unconfirmed, and the rerun writes
it again under the same rule (leaving out the keys the killed run's live sync marked). A kill
between a page's batch and the end of its rewrite may leave the batch's older image over a live
write whose key the rerun's scan no longer sees (deleted since): so a run that resumes a backfill
beside an earlier live sync replays the whole stream under the rule (the poller), or writes every
key in the journal again first (the Lambda), which puts each such key back to its newest state.
Errors in that window are retried in place instead of redoing the page.

What a reader of the target sees meanwhile: each key's state is one the source had since the copy
began (briefly, while live sync replays changes older than the moment the backfill scanned that
key, or between a page's batch and the rewrite after it, an earlier one); never a deleted key
revived once the backfill is done. Live-synced items carry `ferry:version`; deleted keys show as
tombstones, which lack every attribute but the key, so they are absent from every index keyed on
other attributes (an index keyed on the table's own key attributes shows them). The markers add
about 60 bytes to an item: an item within that of the 400 KB limit cannot be written guarded, and is
reported as a poison record.

Once the backfill is done, nothing writes older images any more: live sync switches to plain writes
(whole-item puts and real deletes, one applier in stream order), and the markers are removed
(`clear_markers`: each one only if it is still the one that was read). Verification never counts
them: `visible()` is what every comparison reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

VERSION = "ferry:version"
DELETED = "ferry:deleted"
MARKERS = (VERSION, DELETED)
REFUSED = "ConditionalCheckFailedException"
NAMES = {"#v": VERSION}

NEWER_CONDITION = "attribute_not_exists(#v) OR #v < :sequence"


SEQUENCE_DIGITS = 40


def version(sequence_number: str) -> dict:
    """A stream sequence number as the marker stores it: comparable as a string."""
    return {"S": sequence_number.zfill(SEQUENCE_DIGITS)}


@dataclass
class Change:
    """The net effect of stream records on one key: its new image (None: deleted) and the sequence
    number of the change that produced it."""

    key: dict
    sequence_number: str
    image: dict | None


def visible(item: dict | None) -> dict | None:
    """The item as the application sees it: None for a tombstone, the rest without Ferry's markers."""
    if item is None or DELETED in item:
        return None
    if VERSION not in item:
        return item
    return {name: value for name, value in item.items() if name not in MARKERS}


@dataclass
class Written:
    """What a conditional write did: whether it landed (true as a bool), and the write capacity units
    DynamoDB says it consumed (None when it does not say: a refused write's response has none)."""

    landed: bool
    units: float | None = None

    def __bool__(self) -> bool:
        return self.landed


def _put(client, table: str, item: dict, condition: str, values: dict | None = None) -> Written:
    """A conditional put, refused (not landed) when a newer state is there."""
    try:
        response = client.put_item(TableName=table, Item=item, ConditionExpression=condition,
                                   ExpressionAttributeNames=NAMES, ReturnConsumedCapacity="TOTAL",
                                   **({"ExpressionAttributeValues": values} if values else {}))
        return Written(True, response.get("ConsumedCapacity", {}).get("CapacityUnits"))
    except ClientError as error:
        if error.response["Error"]["Code"] == REFUSED:
            return Written(False)
        raise


def apply_change(client, table: str, change: Change, guarded: bool) -> Written:
    """Live sync's write of one key. Guarded: the image (or a tombstone) tagged with the change's
    sequence number, only over an older state. Plain (the backfill is done): a put or a delete.
    Not landed when a newer state was already there. Idempotent."""
    if not guarded:
        if change.image is None:
            client.delete_item(TableName=table, Key=change.key)
        else:
            client.put_item(TableName=table, Item=change.image)
        return Written(True)
    marked = {**(change.image or change.key), VERSION: version(change.sequence_number)}
    if change.image is None:
        marked[DELETED] = {"BOOL": True}
    return _put(client, table, marked, NEWER_CONDITION, {":sequence": version(change.sequence_number)})


MAX_COMPARED_ATTRIBUTES = 200  # a condition expression holds at most 4 KB


def apply_over_unchanged(client, table: str, change: Change, before: dict | None) -> bool:
    """A cutover's switch window (the service may already write to this table): write the change only
    if the key still holds `before`, the state the source had before it (None: absent). DynamoDB
    checks each attribute of `before` atomically with the write (`=` compares whole maps, lists and
    sets); the caller has just compared whole items, so an attribute the service added between that
    read and this write is the one change this cannot see. False: the service changed the key first,
    and its write is kept."""
    if before is None:
        condition, names, values = "attribute_not_exists(#k)", {"#k": next(iter(change.key))}, None
    else:
        compared = list(before.items())[:MAX_COMPARED_ATTRIBUTES]
        condition = " AND ".join(f"#a{n} = :a{n}" for n in range(len(compared)))
        names = {f"#a{n}": name for n, (name, _) in enumerate(compared)}
        values = {f":a{n}": value for n, (_, value) in enumerate(compared)}
    conditional = {"ConditionExpression": condition, "ExpressionAttributeNames": names,
                   **({"ExpressionAttributeValues": values} if values else {})}
    try:
        if change.image is None:
            client.delete_item(TableName=table, Key=change.key, **conditional)
        else:
            client.put_item(TableName=table, Item=change.image, **conditional)
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == REFUSED:
            return False
        raise


def clear_marker(client, table: str, key: dict, marker: dict, tombstone: bool) -> bool:
    """Remove one key's markers, only if they are still the ones read (`marker`, the version
    attribute as read): a tombstone is deleted, a versioned item loses its marker. False when
    something newer was written meanwhile (a plain write already replaced it)."""
    condition = "#v = :version" + (" AND attribute_exists(#d)" if tombstone else "")
    values = {":version": marker}
    try:
        if tombstone:
            client.delete_item(TableName=table, Key=key, ConditionExpression=condition,
                               ExpressionAttributeNames={**NAMES, "#d": DELETED}, ExpressionAttributeValues=values)
        else:
            client.update_item(TableName=table, Key=key, UpdateExpression="REMOVE #v", ConditionExpression=condition,
                               ExpressionAttributeNames=NAMES, ExpressionAttributeValues=values)
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == REFUSED:
            return False
        raise
