"""S3 buckets, in rclone's split: how to read a store, one rule for "the same object", operations on
objects, and a sync that only decides what to do.

One object from listing to copy (`ferry bucket`):
    tasks/s3.sync_objects             the step: compare range by range, a copy task per batch
    ferry/s3/compare.compare_buckets  source ranges as they finish, each beside the same target range
    ferry/s3/listing.iter_ranges      the source listed in parallel key ranges (list_range: one range)
    ferry/s3/compare.compare_objects  each key judged ...
    lambdas/s3_compare                ... by the one rule: same_by_listing, else HEADs and same_object
    ferry/s3/sync.batches_to_copy     differences gathered into batches as ranges come in
    tasks/s3.copy_batch               one batch, its own Prefect task with retries
    ferry/s3/copy.copy_objects        the batch copied concurrently (copy_listed: one object)
    lambdas/s3_copy.copy_object       one server-side copy (CopyObject, or multipart UploadPartCopy),
                                      carrying the migration's CopySettings (target KMS key, Object Lock)
    ferry/s3/restore                  with --restore: archived objects the comparison set aside,
                                      restored, then copied by the same path as each restore finishes

Live sync (routes.py: how the bucket's events reach the pair's queue; events.py: the queue and its
drain; lambda_sync.py; lambdas/s3_apply.py) and verification (verify.py) use the same comparison
and copy. With --all-versions, versions.py lists both buckets' histories key by key and
lambdas/s3_versions.py makes each key's target history equal (the bulk sync, live sync, verify).
"""
