"""Write DynamoDB items in batches of 25, retrying every unprocessed entry until it is written.

Used by the backfill (ferry/dynamo/backfill.py, under the write rule of lambdas/write_rule.py).
Writes are puts of whole items and deletes by key: applying the same batch twice changes nothing.
"""

from __future__ import annotations

import logging
import random
import time

log = logging.getLogger(__name__)

BATCH_LIMIT = 25  # DynamoDB rejects BatchWriteItem with more than 25 requests
MAX_ATTEMPTS_WITHOUT_PROGRESS = 12
MAX_BACKOFF_SECONDS = 8.0


class UnprocessedItemsError(RuntimeError):
    """DynamoDB kept refusing some writes; the caller's retry (a Prefect task retry) resumes safely."""


def chunks(requests: list, size: int = BATCH_LIMIT):
    for start in range(0, len(requests), size):
        yield requests[start : start + size]


def write_batch(client, table: str, requests: list[dict], sleep=time.sleep, limit=None) -> int:
    """Write up to 25 requests ({"PutRequest": ...} / {"DeleteRequest": ...}); return how many.

    Every entry DynamoDB hands back as unprocessed is sent again with full-jitter exponential
    backoff. It gives up (raising) only after many attempts in a row make no progress at all, so a
    throttled table slows the copy down but never loses an item. With a `limit` (an object with
    wait() and pay(units), such as Ferry's rate limiter), each request waits for it first and pays
    the capacity DynamoDB says it consumed.
    """
    pending = list(requests)
    attempts_without_progress = 0
    while pending:
        if limit is not None:
            limit.wait()
            response = client.batch_write_item(RequestItems={table: pending}, ReturnConsumedCapacity="TOTAL")
            limit.pay(sum(c.get("CapacityUnits", 0.0) for c in response.get("ConsumedCapacity", [])))
        else:
            response = client.batch_write_item(RequestItems={table: pending})
        unprocessed = response.get("UnprocessedItems", {}).get(table, [])
        if len(unprocessed) < len(pending):
            attempts_without_progress = 0
        else:
            attempts_without_progress += 1
            if attempts_without_progress >= MAX_ATTEMPTS_WITHOUT_PROGRESS:
                raise UnprocessedItemsError(
                    f"{len(unprocessed)} writes to {table} were refused "
                    f"{attempts_without_progress} times in a row"
                )
        if unprocessed:
            log.debug("%d of %d writes to %s unprocessed; retrying", len(unprocessed), len(pending), table)
            backoff = min(MAX_BACKOFF_SECONDS, 0.05 * 2 ** max(attempts_without_progress, 1))
            sleep(random.uniform(0, backoff))
        pending = unprocessed
    return len(requests)


def write_all(client, table: str, requests: list[dict], pool=None, limit=None) -> int:
    """Write any number of requests in batches of 25, concurrently on `pool` if one is given."""
    batches = list(chunks(requests))
    if pool is None or len(batches) < 2:
        return sum(write_batch(client, table, batch, limit=limit) for batch in batches)
    return sum(pool.map(lambda batch: write_batch(client, table, batch, limit=limit), batches))


def put_requests(items: list[dict]) -> list[dict]:
    return [{"PutRequest": {"Item": item}} for item in items]
