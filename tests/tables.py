"""Small helpers that build test tables and read them back raw."""

from __future__ import annotations

from lambdas.batch_write import put_requests, write_all

MIGRATION = "table:us-east-1/src>us-east-1/dst"  # the state table's key of `ferry table src dst` here


def create_table(client, name: str, hash_key=("pk", "S"), range_key=None, **extra) -> None:
    keys = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    attributes = [{"AttributeName": hash_key[0], "AttributeType": hash_key[1]}]
    if range_key:
        keys.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
        attributes.append({"AttributeName": range_key[0], "AttributeType": range_key[1]})
    attributes += extra.pop("ExtraAttributes", [])
    client.create_table(TableName=name, KeySchema=keys, AttributeDefinitions=attributes,
                        **({"BillingMode": "PAY_PER_REQUEST"} | extra))


def put_items(client, table: str, items: list[dict]) -> None:
    write_all(client, table, put_requests(items))


def simple_items(count: int, size: int = 100, prefix: str = "k") -> list[dict]:
    return [{"pk": {"S": f"{prefix}{i:07d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * size}} for i in range(count)]


def scan_all(client, table: str) -> list[dict]:
    items = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page["Items"])
    return items


def by_key(items: list[dict], *key_names: str) -> dict:
    from lambdas.dynamo_apply import key_identity

    return {key_identity({k: item[k] for k in key_names}): item for item in items}
