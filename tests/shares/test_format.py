"""The share log's record format: one definition, round trips, offsets from the struct."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from poold.shares.format import (
    FIELD_AT,
    FIELD_SIZE,
    SHARE,
    SHARE_FIELDS,
    BlockRecord,
    JobRecord,
    RecordError,
    ShareRecord,
    decode_payload,
    decode_share,
    share_header_hash,
    share_tuple,
)
from poold.shares.scan import LAYOUT

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=40)
records = st.builds(
    ShareRecord,
    ts_ms=st.integers(0, 2**63 - 1),
    node=st.integers(0, 255),
    account=names,
    worker=names,
    job=st.text("0123456789abcdef", min_size=1, max_size=16),
    height=st.integers(0, 2**32 - 1),
    bits=st.integers(0, 2**32 - 1),
    diff_num=st.integers(1, 2**64 - 1),
    diff_den=st.integers(1, 2**64 - 1),
    en1=st.binary(min_size=4, max_size=4),
    en2=st.binary(min_size=0, max_size=16),
    ntime=st.integers(0, 2**32 - 1),
    nonce=st.integers(0, 2**32 - 1),
    version=st.integers(0, 2**32 - 1),
    block=st.booleans(),
    hash=st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
)


@given(records)
def test_share_record_round_trips_and_its_fields_are_where_the_layout_says(
    rec: ShareRecord,
) -> None:
    payload = rec.encode()
    assert decode_share(payload) == rec
    assert share_tuple(payload) == (
        rec.ts_ms,
        rec.bits,
        rec.diff_num,
        rec.diff_den,
        rec.account.encode(),
        rec.worker.encode(),
    )
    for name in ("ts_ms", "bits", "diff_num", "diff_den", "node", "height"):
        at, size = FIELD_AT[name], FIELD_SIZE[name]
        assert int.from_bytes(payload[at : at + size], "little") == getattr(rec, name)
    assert decode_payload(payload) == rec.as_dict()
    assert share_header_hash(payload) == rec.hash
    if rec.hash is not None:
        assert rec.as_dict()["hash"] == rec.hash[::-1].hex()


def test_offsets_follow_the_struct_and_the_kernel_reads_them() -> None:
    assert SHARE_FIELDS[0] == "tag" and sum(FIELD_SIZE.values()) == SHARE.size
    assert FIELD_AT["ts_ms"] == 3 and FIELD_AT["diff_den"] == 27  # the layout as written
    assert LAYOUT.tolist()[3:8] == [
        SHARE.size,
        FIELD_AT["ts_ms"],
        FIELD_SIZE["ts_ms"],
        FIELD_AT["bits"],
        FIELD_SIZE["bits"],
    ]


def test_a_torn_or_lying_share_payload_is_a_record_error() -> None:
    payload = ShareRecord(1, 0, "a", "w", "j", 1, 2, 3, 4, bytes(4), b"\1", 0, 0, 0, False).encode()
    with pytest.raises(RecordError, match="length mismatch"):
        decode_share(payload + b"x")
    with pytest.raises(RecordError, match="shorter"):
        decode_share(payload[:10])
    bad_name = payload[:-1] + b"\xff"
    with pytest.raises(RecordError, match="not UTF-8"):
        decode_share(bad_name)
    with pytest.raises(RecordError, match="does not parse"):
        decode_payload(b"{not json")
    with pytest.raises(struct.error):
        SHARE.unpack_from(b"\1")


def test_block_record_round_trips_and_names_a_bad_field() -> None:
    rec = BlockRecord(
        ts_ms=1_800_000_000_123,
        node=2,
        height=101,
        hash="ab" * 32,
        accepted=None,
        reason="submit failed: timeout",
        account="alice",
        worker="rig1",
        reward_sat=5_000_000_000,
        bits=0x207FFFFF,
    )
    js = rec.to_json()
    assert js["t"] == "block" and js["ts"] == rec.ts_ms and "ts_ms" not in js
    assert BlockRecord.from_json(js) == rec
    for key, value, needle in [
        ("ts", "soon", "'ts' is 'soon'"),
        ("reward_sat", True, "'reward_sat' is True"),
        ("hash", None, "'hash' is None"),
        ("accepted", "yes", "'accepted' is 'yes'"),
    ]:
        with pytest.raises(RecordError, match=needle):
            BlockRecord.from_json({**js, key: value})


def test_a_share_record_from_before_header_hashes_still_reads() -> None:
    """A record as main wrote it (no flag bit 1, nothing after the names) decodes with no
    hash; the same share with its hash is 32 bytes longer and decodes with it."""
    old = bytes.fromhex(
        "0100000100000000000000010000000200000003000000000000000400000000000000"
        "00000000010000000000000000000000000100016a77"
    )
    rec = decode_share(old)
    assert (rec.account, rec.worker, rec.job, rec.nonce, rec.hash) == ("", "w", "j", 1, None)
    new = ShareRecord(**{**_fields(rec), "hash": bytes(range(32))}).encode()
    assert len(new) == len(old) + 32 and new[1] & 2
    assert decode_share(new).hash == bytes(range(32))


def _fields(rec: ShareRecord) -> dict[str, object]:
    return {name: getattr(rec, name) for name in ShareRecord.__slots__}


def test_job_record_rebuilds_the_header_and_names_a_bad_field() -> None:
    job = JobRecord(
        1_800_000_000_000,
        2,
        "0200000100000007",
        101,
        bytes(range(32)),
        0x20000000,
        0x207FFFFF,
        0x6543A1B2,
        b"\x01\x02",
        b"\x03",
        (bytes(32), b"\xff" * 32),
    )
    assert JobRecord.from_json(orjson.loads(orjson.dumps(job.to_json()))) == job
    header = job.header(b"\xaa" * 4, b"\xbb" * 4, 5, 6, 0x20002000)
    assert len(header) == 80 and header[4:36] == bytes(range(32))
    assert header[:4] == (0x20002000).to_bytes(4, "little")
    assert header[68:80] == struct.pack("<III", 5, 0x207FFFFF, 6)
    for key, bad in (("branch", ["00"]), ("prev_hash", "zz"), ("node", 256), ("bits", -1)):
        with pytest.raises(RecordError, match=key):
            JobRecord.from_json({**job.to_json(), key: bad})
