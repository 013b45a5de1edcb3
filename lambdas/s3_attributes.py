"""Tags and ACLs of one object, written on the target as values read from the source.

A value written from a read could carry an older state than another applier's (both read, the
newer one writes first), so each write is followed by another read of the source, and the value
written again if the source changed since. Whatever the interleaving, the last write of each applier
carries a state read after its previous write, and a change after that has an event of its own.
After REWRITES writes that were each stale again, SourceKeepsChanging: the message or task is retried.

Where histories are copied (`--all-versions`), `versions` pins both sides to the versions the equal
chains end with: a version the service writes meanwhile has an event of its own, and its tags or
grants never land on the copy of the version before it.

Used by live sync (tag and ACL events), and by every copy: a copy carries the tags S3 copies with it
(TaggingDirective COPY) but never the ACL, so where the source bucket's ACLs are enabled the copy's
grants are written after it (lambdas/s3_copy.CopySettings.acls).
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from lambdas.s3_compare import same_tags, tag_set

log = logging.getLogger(__name__)

REWRITES = 3
# Gone meanwhile (a version ID: deleted; a delete marker's ACL or tags are asked for: MethodNotAllowed)
GONE = ("404", "NoSuchKey", "NotFound", "NoSuchVersion", "MethodNotAllowed", "405")


class SourceKeepsChanging(Exception):
    """A value written from a read of the source was stale again after each of REWRITES writes."""


def pinned(version_id: str | None) -> dict:
    return {"VersionId": version_id} if version_id else {}


def read_tags(s3, bucket: str, key: str, version_id: str | None = None) -> dict[str, str] | None:
    """The object's (or that version's) tags, or None if it does not exist."""
    try:
        return tag_set(s3.get_object_tagging(Bucket=bucket, Key=key, **pinned(version_id)))
    except ClientError as error:
        if error.response["Error"]["Code"] in GONE:
            return None
        raise


def sync_tags(s3, source_bucket: str, target_bucket: str, key: str,
              versions: tuple[str, str] | None = None) -> bool:
    """Put the source's tags on the target object if they differ; read the source again after each
    write (see the module's docstring). `versions`: (source, target) version IDs. Returns whether
    tags were written."""
    source_version, target_version = versions or (None, None)
    wanted, written = read_tags(s3, source_bucket, key, source_version), False
    for attempt in range(REWRITES + 1):
        current = read_tags(s3, target_bucket, key, target_version)
        if wanted is None or current is None or same_tags(wanted, current):  # gone meanwhile: its event follows
            return written
        if attempt == REWRITES:
            break
        if wanted:
            s3.put_object_tagging(Bucket=target_bucket, Key=key, **pinned(target_version),
                                  Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in wanted.items()]})
        else:
            s3.delete_object_tagging(Bucket=target_bucket, Key=key, **pinned(target_version))
        written, wanted = True, read_tags(s3, source_bucket, key, source_version)
    raise SourceKeepsChanging(f"the tags of {key} changed on every read while they were written: retried")


GRANT_PARAMETERS = {"READ": "GrantRead", "WRITE": "GrantWrite", "READ_ACP": "GrantReadACP",
                    "WRITE_ACP": "GrantWriteACP", "FULL_CONTROL": "GrantFullControl"}


def _grantee(grantee: dict) -> str:
    """A grantee as a grant header names it: id="...", uri="..." or emailAddress="..."."""
    for field, name in (("ID", "id"), ("URI", "uri"), ("EmailAddress", "emailAddress")):
        if grantee.get(field):
            return f'{name}="{grantee[field]}"'
    return ""


def extra_grants(acl: dict) -> set[tuple[str, str]]:
    """An object ACL's grants to groups (everyone, authenticated users, log delivery), as
    (permission, grantee): what a copy must keep to serve as its source did (a public website's
    objects). Grants to accounts are not carried: they name the old home's accounts (the source
    bucket's owner among them, through bucket-owner-full-control), and the new home's owner has its
    own; comparing them would never settle across accounts."""
    return {(g["Permission"], _grantee(g["Grantee"])) for g in acl.get("Grants", [])
            if g.get("Grantee", {}).get("URI")}


def same_grants(s3, source_bucket: str, target_bucket: str, key: str) -> bool:
    """Rule step 8 (lambdas/s3_compare.py): both objects grant groups the same (extra_grants). Both
    ACLs are read with `s3`, the target side's client that copies and sync_acl use, so what this
    calls different is what a repair can set right. An object gone from either side meanwhile is
    different (the next pass sees why); one whose ACL may not be read is not compared (a warning)."""
    try:
        source = s3.get_object_acl(Bucket=source_bucket, Key=key)
        target = s3.get_object_acl(Bucket=target_bucket, Key=key)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("AccessDenied", "403"):
            log.warning("the ACL of %s may not be read: not compared", key)
            return True
        if code in GONE:
            return False
        raise
    return extra_grants(source) == extra_grants(target)


def sync_acl(s3, source_bucket: str, target_bucket: str, key: str, target_private: bool = False,
             versions: tuple[str, str] | None = None) -> bool:
    """Grant on the target object what the source object grants groups (extra_grants; the target's
    owner keeps full control), by grant headers. A target bucket whose ACLs are
    disabled (Bucket owner enforced, S3's default since 2023) is left as it is. Read again after
    each write. `target_private`: the target was just copied (a copy grants nobody else), so a
    source that grants nobody else costs one request. `versions`: (source, target) version IDs.
    Returns whether the ACL was written."""
    source_version, target_version = versions or (None, None)
    written = False
    for attempt in range(REWRITES + 1):
        try:
            source = s3.get_object_acl(Bucket=source_bucket, Key=key, **pinned(source_version))
            if target_private and not written and not extra_grants(source):
                return False
            target = s3.get_object_acl(Bucket=target_bucket, Key=key, **pinned(target_version))
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in GONE:
                return written  # gone meanwhile: its event follows
            if code in ("AccessDenied", "403"):  # an object whose ACL its bucket's owner may not read
                log.warning("the ACL of %s may not be read: not copied", key)
                return written
            raise
        wanted = extra_grants(source)
        if wanted == extra_grants(target):
            return written
        if attempt == REWRITES:
            break
        grants: dict[str, list[str]] = {"GrantFullControl": [_grantee({"ID": target["Owner"]["ID"]})]}
        for permission, grantee in sorted(wanted):
            grants.setdefault(GRANT_PARAMETERS[permission], []).append(grantee)
        try:
            s3.put_object_acl(Bucket=target_bucket, Key=key, **pinned(target_version),
                              **{name: ", ".join(who) for name, who in grants.items()})
        except ClientError as error:
            if error.response["Error"]["Code"] != "AccessControlListNotSupported":
                raise
            log.warning("object ACLs are disabled in %s: the ACL of %s is not copied", target_bucket, key)
            return written
        written = True
    raise SourceKeepsChanging(f"the ACL of {key} changed on every read while it was written: retried")
