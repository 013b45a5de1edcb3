"""Table descriptions: checking that two tables are compatible, and cloning one into another.

A clone carries what an application relies on: key schema, attribute definitions, GSIs and LSIs
(with projections), billing mode and provisioned capacity, table class, server-side encryption and
tags (CreateTable), then TTL, point-in-time recovery and deletion protection (completed on every run,
so a kill in between leaves nothing missing). Not cloned: streams (the target's stream is the target
application's business), auto scaling policies, resource policies, contributor insights, Kinesis
streaming destinations, global table replicas and backups.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from ferry.errors import BadInput


def describe_table(client, table: str) -> dict | None:
    """The table's description, or None if it does not exist."""
    try:
        return client.describe_table(TableName=table)["Table"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def require_table(client, table: str, side: str) -> dict:
    description = describe_table(client, table)
    if description is None:
        region = client.meta.region_name
        raise BadInput(
            f"{side} table {table!r} does not exist in {region}: check the name, "
            f"--{side}-region and --{side}-profile"
            + (" (or pass --create-target)" if side == "target" else "")
        )
    return description


def key_schema(description: dict) -> list[tuple[str, str, str]]:
    """(name, HASH/RANGE, S/N/B) for each key attribute, hash key first."""
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    ordered = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return [(k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in ordered]


def check_key_schemas_match(source: dict, target: dict) -> None:
    src, tgt = key_schema(source), key_schema(target)
    if src != tgt:
        def show(schema):
            return ", ".join(f"{name} {kind} {type_}" for name, kind, type_ in schema)

        raise BadInput(
            f"key schemas differ: source {source['TableName']!r} has [{show(src)}], "
            f"target {target['TableName']!r} has [{show(tgt)}]; create the target with the same keys "
            "or let Ferry create it with --create-target"
        )


def is_empty(client, table: str) -> bool:
    return not client.scan(TableName=table, Limit=1)["Items"]


def _throughput(source: dict | None) -> dict | None:
    if not source:
        return None
    read, write = source.get("ReadCapacityUnits", 0), source.get("WriteCapacityUnits", 0)
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write} if read and write else None


def _index(index: dict, provisioned: bool, global_index: bool) -> dict:
    spec = {"IndexName": index["IndexName"], "KeySchema": index["KeySchema"], "Projection": index["Projection"]}
    if global_index and provisioned and _throughput(index.get("ProvisionedThroughput")):
        spec["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return spec


def clone_spec(source: dict, target_name: str, tags: list[dict]) -> dict:
    """CreateTable arguments that give `target_name` the same shape as the described source."""
    billing = source.get("BillingModeSummary", {}).get("BillingMode")
    provisioned = billing != "PAY_PER_REQUEST" and _throughput(source.get("ProvisionedThroughput")) is not None
    spec: dict = {
        "TableName": target_name,
        "KeySchema": source["KeySchema"],
        "AttributeDefinitions": source["AttributeDefinitions"],
        "BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST",
    }
    if provisioned:
        spec["ProvisionedThroughput"] = _throughput(source["ProvisionedThroughput"])
    if source.get("GlobalSecondaryIndexes"):
        spec["GlobalSecondaryIndexes"] = [_index(i, provisioned, True) for i in source["GlobalSecondaryIndexes"]]
    if source.get("LocalSecondaryIndexes"):
        spec["LocalSecondaryIndexes"] = [_index(i, provisioned, False) for i in source["LocalSecondaryIndexes"]]
    sse = source.get("SSEDescription")
    if sse and sse.get("Status") in ("ENABLED", "ENABLING"):
        spec["SSESpecification"] = {"Enabled": True, "SSEType": sse.get("SSEType", "KMS")}
        if sse.get("KMSMasterKeyArn"):
            spec["SSESpecification"]["KMSMasterKeyId"] = sse["KMSMasterKeyArn"]
    if tags:
        spec["Tags"] = tags
    if source.get("TableClassSummary", {}).get("TableClass"):
        spec["TableClass"] = source["TableClassSummary"]["TableClass"]
    return spec


def source_tags(client, description: dict) -> list[dict]:
    tags: list[dict] = []
    kwargs = {"ResourceArn": description["TableArn"]}
    while True:
        page = client.list_tags_of_resource(**kwargs)
        tags.extend(page.get("Tags", []))
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def create_table_like(source_client, target_client, source: dict, target_name: str) -> dict:
    """Create `target_name` shaped like the described source and wait for ACTIVE. Returns its
    description. What CreateTable cannot set is `complete_clone`'s, run on every run."""
    spec = clone_spec(source, target_name, source_tags(source_client, source))
    try:
        target_client.create_table(**spec)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":  # created by an earlier, killed run
            raise
    target_client.get_waiter("table_exists").wait(TableName=target_name, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
    return target_client.describe_table(TableName=target_name)["Table"]


def ttl_attribute(client, table: str) -> str | None:
    """The table's TTL attribute, if TTL is on (or being turned on)."""
    ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    return ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") else None


def complete_clone(source_client, target_client, source: dict, target: dict) -> None:
    """Give the target what the source has and CreateTable does not set: TTL, point-in-time recovery
    and deletion protection. Idempotent, so a run killed between CreateTable and these is completed
    by the next one."""
    source_name, target_name = source["TableName"], target["TableName"]
    if (attribute := ttl_attribute(source_client, source_name)) and not ttl_attribute(target_client, target_name):
        target_client.update_time_to_live(
            TableName=target_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute})
    if point_in_time_recovery(source_client, source_name) and not point_in_time_recovery(target_client, target_name):
        target_client.update_continuous_backups(
            TableName=target_name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    if source.get("DeletionProtectionEnabled") and not target.get("DeletionProtectionEnabled"):
        target_client.update_table(TableName=target_name, DeletionProtectionEnabled=True)


def point_in_time_recovery(client, table: str) -> bool:
    backups = client.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    return backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"


def identity(description: dict | None) -> str | None:
    """Which table this is, not just its name: its ARN and creation time (a table deleted and created
    again under the same name is another table)."""
    if description is None:
        return None
    created = description["CreationDateTime"]
    return f"{description['TableArn']}@{created.timestamp() if hasattr(created, 'timestamp') else created}"
