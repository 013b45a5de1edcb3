"""BatchWriteItem: unprocessed entries are retried until written, never dropped."""

from __future__ import annotations

import pytest

from lambdas import batch_write
from lambdas.batch_write import UnprocessedItemsError, put_requests, write_all, write_batch
from tables import create_table, scan_all, simple_items


class Throttling:
    """Wraps a real client: for the first `refusals` calls, DynamoDB 'accepts' only part of the batch
    (it writes the first `accept` requests) and hands the rest back as UnprocessedItems."""

    def __init__(self, client, refusals: int, accept: int = 3):
        self.client, self.refusals, self.accept, self.calls = client, refusals, accept, 0

    def batch_write_item(self, RequestItems):
        self.calls += 1
        [(table, requests)] = RequestItems.items()
        if self.calls > self.refusals:
            return self.client.batch_write_item(RequestItems=RequestItems)
        if self.accept:
            self.client.batch_write_item(RequestItems={table: requests[: self.accept]})
        return {"UnprocessedItems": {table: requests[self.accept:]} if requests[self.accept:] else {}}


def test_unprocessed_items_are_retried_until_every_item_is_written(dynamodb):
    create_table(dynamodb, "dst")
    items = simple_items(200)
    throttled = Throttling(dynamodb, refusals=30, accept=3)

    written = write_all(throttled, "dst", put_requests(items))

    assert written == 200
    assert throttled.calls > 200 // 25  # the refusals really happened and were retried
    assert {i["pk"]["S"] for i in scan_all(dynamodb, "dst")} == {i["pk"]["S"] for i in items}


def test_a_batch_refused_again_and_again_raises_instead_of_dropping(dynamodb, monkeypatch):
    create_table(dynamodb, "dst")
    monkeypatch.setattr(batch_write, "MAX_BACKOFF_SECONDS", 0.001)
    refused = Throttling(dynamodb, refusals=10**6, accept=0)

    with pytest.raises(UnprocessedItemsError):
        write_batch(refused, "dst", put_requests(simple_items(5)), sleep=lambda s: None)
    assert refused.calls == batch_write.MAX_ATTEMPTS_WITHOUT_PROGRESS
