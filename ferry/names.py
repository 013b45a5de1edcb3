"""Names of the AWS resources Ferry creates for a pair (queues, functions, roles), in one place.

`ferry-sync-SOURCE-TARGET` where that is a valid name: readable, and the name earlier versions
used, so a migration they started finds its resources. Bucket and table names may hold dots, which
SQS queue and Lambda function names may not, and may be long: such a pair gets its dots as '_', is
cut to the limit, and ends with 8 characters of a hash of the exact pair, so two such pairs never
share a name.
"""

from __future__ import annotations

import hashlib


def pair_name(source: str, target: str, limit: int) -> str:
    base = f"ferry-sync-{source}-{target}"
    if "." not in base and len(base) <= limit:
        return base
    digest = hashlib.sha256(f"{source}\n{target}".encode()).hexdigest()[:8]
    return f"{base.replace('.', '_')[: limit - 9]}-{digest}"
