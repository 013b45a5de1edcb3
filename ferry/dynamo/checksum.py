"""Order-independent content checksums of DynamoDB items.

Each item is reduced to a canonical byte string (attribute names sorted, sets sorted, numbers
normalised so that "1.50" and "1.5" agree), hashed with BLAKE2b to 64 bits, and the hashes are added
modulo 2**64. A sum does not depend on scan order or segmentation, so per-segment digests of two
tables can be combined and compared; unlike XOR, a duplicated item does not cancel itself out.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from hashlib import blake2b

MODULUS = 2**64
_NUMBER_CONTEXT = decimal.Context(prec=60)  # DynamoDB numbers have at most 38 significant digits


@dataclass
class Digest:
    """A count and a checksum that add up: the digest of a union is the sum of the digests."""

    items: int = 0
    checksum: int = 0

    def add(self, other: "Digest") -> "Digest":
        return Digest(self.items + other.items, (self.checksum + other.checksum) % MODULUS)

    @property
    def hex(self) -> str:
        return f"{self.checksum:016x}"


def canonical_number(text: str) -> str:
    """'001.50', '1.5' and '15E-1' all become '15e-1'. Exact: no float, no rounding."""
    value = decimal.Decimal(text).normalize(_NUMBER_CONTEXT)
    if value.is_zero():
        return "0"
    sign, digits, exponent = value.as_tuple()
    return f"{'-' if sign else ''}{''.join(map(str, digits))}e{exponent}"


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(4, "big") + payload


def canonical_value(av: dict) -> bytes:
    """The canonical bytes of one AttributeValue (boto3 client form: B and BS as bytes)."""
    ((type_, value),) = av.items()
    if type_ == "S":
        return _frame(b"S", value.encode())
    if type_ == "N":
        return _frame(b"N", canonical_number(value).encode())
    if type_ == "B":
        return _frame(b"B", bytes(value))
    if type_ == "BOOL":
        return _frame(b"T", b"1" if value else b"0")
    if type_ == "NULL":
        return _frame(b"0", b"")
    if type_ == "SS":
        return _frame(b"s", b"".join(sorted(_frame(b"S", v.encode()) for v in value)))
    if type_ == "NS":
        return _frame(b"n", b"".join(sorted(_frame(b"N", canonical_number(v).encode()) for v in value)))
    if type_ == "BS":
        return _frame(b"b", b"".join(sorted(_frame(b"B", bytes(v)) for v in value)))
    if type_ == "L":
        return _frame(b"L", b"".join(canonical_value(v) for v in value))
    if type_ == "M":
        return _frame(b"M", canonical_item(value))
    raise ValueError(f"unknown DynamoDB attribute type {type_!r}")


def canonical_item(item: dict) -> bytes:
    return b"".join(_frame(b"A", name.encode()) + canonical_value(item[name]) for name in sorted(item))


def item_hash(item: dict) -> int:
    return int.from_bytes(blake2b(canonical_item(item), digest_size=8).digest(), "big")


def digest_items(items: list[dict]) -> Digest:
    return Digest(len(items), sum(map(item_hash, items)) % MODULUS)
