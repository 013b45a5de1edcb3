"""The content checksum: equal content gives equal digests, any change gives a different one."""

from __future__ import annotations

import random

from ferry.dynamo.checksum import Digest, canonical_number, digest_items, item_hash


def test_numbers_are_compared_by_value_with_all_38_digits():
    assert canonical_number("1.50") == canonical_number("1.5") == canonical_number("15E-1")
    assert canonical_number("0") == canonical_number("-0.000")
    big = "12345678901234567890123456789012345678"
    assert canonical_number(big) != canonical_number(big[:-1] + "9")  # the 38th digit counts
    assert canonical_number("1E+125") != canonical_number("1E+124")


def test_set_order_and_attribute_order_do_not_matter():
    a = {"pk": {"S": "x"}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["2", "10"]}, "bs": {"BS": [b"\x01", b"\x00"]}}
    b = {"bs": {"BS": [b"\x00", b"\x01"]}, "ns": {"NS": ["10", "2.0"]}, "ss": {"SS": ["b", "a"]}, "pk": {"S": "x"}}
    assert item_hash(a) == item_hash(b)


def test_types_lists_and_nesting_are_distinguished():
    base = {"pk": {"S": "x"}, "v": {"S": "1"}}
    variants = [
        {"pk": {"S": "x"}, "v": {"N": "1"}},
        {"pk": {"S": "x"}, "v": {"B": b"1"}},
        {"pk": {"S": "x"}, "v": {"SS": ["1"]}},
        {"pk": {"S": "x"}, "v": {"L": [{"S": "1"}]}},
        {"pk": {"S": "x"}, "v": {"M": {"v": {"S": "1"}}}},
        {"pk": {"S": "x"}, "w": {"S": "1"}},
        {"pk": {"S": "x"}, "v": {"S": "1"}, "extra": {"NULL": True}},
    ]
    hashes = {item_hash(base)} | {item_hash(v) for v in variants}
    assert len(hashes) == len(variants) + 1
    assert item_hash({"l": {"L": [{"S": "a"}, {"S": "b"}]}}) != item_hash({"l": {"L": [{"S": "b"}, {"S": "a"}]}})


def test_digest_is_independent_of_order_and_segmentation():
    items = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}} for i in range(1000)]
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    whole = digest_items(items)
    parts = Digest()
    for start in range(0, 1000, 137):
        parts = parts.add(digest_items(shuffled[start:start + 137]))
    assert parts == whole and whole.items == 1000


def test_a_duplicated_item_and_a_missing_item_do_not_cancel_out():
    items = [{"pk": {"S": f"k{i}"}} for i in range(10)]
    assert digest_items(items + [items[0]]).checksum != digest_items(items).checksum
    assert digest_items(items[1:] + [items[2]]) != digest_items(items)
