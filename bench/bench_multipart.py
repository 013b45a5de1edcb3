"""`make bench` (multipart): which threshold and part size copy large objects fastest.

Large objects copied server-side one at a time with Ferry's copy function: one CopyObject (below the
multipart threshold) against a multipart UploadPartCopy at a few part sizes (parts in parallel),
directly and behind the latency proxy. Moto copies bytes in memory and does not model S3's per-copy
bandwidth, so read the ratio as how the request pattern behaves, not as S3's own speed.
Writes bench/results/multipart.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from bench_bucket import s3_client  # noqa: E402
from servers import local_services  # noqa: E402

from lambdas.s3_copy import copy_object  # noqa: E402

MIB = 2**20
OBJECT_MIB = int(os.environ.get("BENCH_MULTIPART_MIB", 64))
OBJECTS = 3
PART_SIZES_MIB = [8, 16, 32]


def run(endpoint: str, source: str, keys: list[str], label: str) -> dict:
    s3 = s3_client(endpoint)
    result = {"setting": label, "object MiB": OBJECT_MIB, "objects": OBJECTS}
    ways = [("one CopyObject", OBJECT_MIB * MIB * 2, OBJECT_MIB * MIB)] + [
        (f"parts of {p} MiB", p * MIB, p * MIB) for p in PART_SIZES_MIB]
    for name, threshold, part_size in ways:
        target = f"mp-{label}-{name.split()[-2].lower()}-{part_size // MIB}"
        s3.create_bucket(Bucket=target)
        started = time.monotonic()
        for key in keys:
            copy_object(s3, source, key, target, OBJECT_MIB * MIB, multipart_threshold=threshold - 1,
                        part_size=part_size)
        result[f"{name} seconds"] = round(time.monotonic() - started, 2)
    best = min((v, k) for k, v in result.items() if k.endswith("seconds"))
    result["fastest"] = best[1].removesuffix(" seconds")
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    with local_services(latency_ms=50, prefect=False) as services:
        s3 = s3_client(services.moto)
        s3.create_bucket(Bucket="mp-source")
        keys = [f"large/{i}.bin" for i in range(OBJECTS)]
        for key in keys:
            s3.put_object(Bucket="mp-source", Key=key, Body=os.urandom(OBJECT_MIB * MIB))
        results = [run(services.moto, "mp-source", keys, "direct"), run(services.proxied, "mp-source", keys, "50ms")]
        out = ROOT / "bench" / "results" / "multipart.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
