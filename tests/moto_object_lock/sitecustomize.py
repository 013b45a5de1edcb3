"""Put on PYTHONPATH of a `ferry` subprocess (tests/test_bucket_storage.py) to copy Object Lock
settings on moto: moto 5.2.6 applies PutObject's Object Lock rule (Content-MD5 or
x-amz-sdk-checksum-algorithm required) to CopyObject too, which on AWS has no body and no
Content-MD5 member. This adds the header moto looks for to every CopyObject request."""

import botocore.handlers


def add_checksum_header(request, **kwargs) -> None:
    request.headers["x-amz-sdk-checksum-algorithm"] = "CRC32"


botocore.handlers.BUILTIN_HANDLERS.append(("before-sign.s3.CopyObject", add_checksum_header))
