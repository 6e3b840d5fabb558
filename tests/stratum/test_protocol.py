from __future__ import annotations

import itertools
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poold.stratum import protocol as p

STREAM = (
    b'{"id":1,"method":"mining.configure","params":[["version-rolling"],'
    b'{"version-rolling.mask":"1fffe000"}]}\n'
    b'{"id":2,"method":"mining.subscribe","params":["cgminer/4.10.0","deadbeef"]}\r\n'
    b'{"id":3,"method":"mining.authorize","params":["acct.rig1","d=512"]}\n'
    b"\n"
    b'{"id":4,"method":"mining.suggest_difficulty","params":[0.5]}\n'
    b'{"id":"x","method":"mining.submit","params":["acct.rig1","1f","00000001","6543a1b2",'
    b'"deadBEEF","00002000"]}\n'
    b'{"id":6,"method":"mining.extranonce.subscribe","params":[]}\n'
    b'{"id":7,"method":"mining.get_transactions","params":[]}\n'
    b'{"id":8,"result":"cgminer","error":null}\n'
)

EXPECTED = [
    p.Configure(1, ("version-rolling",), {"version-rolling.mask": "1fffe000"}),
    p.Subscribe(2, "cgminer/4.10.0", "deadbeef"),
    p.Authorize(3, "acct.rig1", "d=512"),
    p.SuggestDifficulty(4, Fraction(1, 2)),
    p.Submit("x", "acct.rig1", "1f", b"\x00\x00\x00\x01", 0x6543A1B2, 0xDEADBEEF, 0x2000),
    p.ExtranonceSubscribe(6),
    p.UnknownMethod(7, "mining.get_transactions"),
    p.PeerResponse(8),
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_parse_is_chunking_invariant(chunk: int) -> None:
    conn = p.StratumConnection()
    events = []
    for i in range(0, len(STREAM), chunk):
        events += conn.receive_data(STREAM[i : i + chunk])
    assert events == EXPECTED
    assert conn.buffered_bytes == 0


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_parse_any_split(cuts: list[int]) -> None:
    conn = p.StratumConnection()
    bounds = sorted({0, len(STREAM), *cuts})
    events = []
    for a, b in itertools.pairwise(bounds):
        events += conn.receive_data(STREAM[a:b])
    assert events == EXPECTED


@settings(max_examples=300)
@given(st.binary(max_size=3000))
def test_random_bytes_parse_or_protocol_error(data: bytes) -> None:
    conn = p.StratumConnection(max_line_bytes=1024)
    try:
        events = conn.receive_data(data)
    except p.RemoteProtocolError:
        return
    for ev in events:
        assert isinstance(ev, p.Event)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.sampled_from(
        [
            "mining.submit",
            "mining.subscribe",
            "mining.authorize",
            "mining.configure",
            "mining.suggest_difficulty",
            "x",
        ]
    ),
    json_values,
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5), st.booleans()),
)
def test_random_requests_become_events(method: str, params: object, rid: object) -> None:
    line = orjson.dumps({"id": rid, "method": method, "params": params}) + b"\n"
    conn = p.StratumConnection()
    [ev] = conn.receive_data(line)
    assert isinstance(ev, p.Event)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "reason", "junk"),
    [
        (b"{nope", "malformed JSON", True),
        (b"[1,2]", "must be a JSON object", True),
        (b'{"id":1}', "missing method", True),
        (b'{"id":1,"method":"mining.submit","params":"x"}', "params must be a list", False),
        (b'{"id":1,"method":"mining.submit","params":["a","b","c"]}', "5 or 6 params", False),
        (b'{"id":1,"method":"mining.submit","params":["a","1","zz","00","00"]}', "not hex", False),
        (b'{"id":1,"method":"mining.submit","params":["a","1","000","00","00"]}', "even", False),
        (
            b'{"id":1,"method":"mining.submit","params":["a","1","00","123456789","00"]}',
            "longer than 8",
            False,
        ),
        (b'{"id":1,"method":"mining.submit","params":["a","1","00","0x12","00"]}', "8 hex", False),
        (
            b'{"id":1,"method":"mining.submit","params":[1,"1","00","00","00"]}',
            "worker must be",
            False,
        ),
        (b'{"id":1,"method":"mining.suggest_difficulty","params":[-5]}', "> 0", False),
        (b'{"id":1,"method":"mining.suggest_difficulty","params":[1e300]}', "outside", False),
        (b'{"id":1,"method":"mining.suggest_difficulty","params":[true]}', "number", False),
        (b'{"id":1,"method":"mining.authorize","params":[]}', "needs a user", False),
        (b'{"id":true,"method":"mining.subscribe","params":[]}', "id must be", True),
    ],
)
def test_bad_requests_are_events_naming_the_problem(line: bytes, reason: str, junk: bool) -> None:
    conn = p.StratumConnection()
    [ev] = conn.receive_data(line + b"\n")
    assert isinstance(ev, p.InvalidRequest)
    assert reason in ev.reason and ev.junk is junk


def test_oversize_line_is_a_protocol_error_and_memory_stays_bounded() -> None:
    conn = p.StratumConnection(max_line_bytes=256)
    with pytest.raises(p.RemoteProtocolError, match="256"):
        for _ in range(100):
            conn.receive_data(b"a" * 100)
    assert conn.buffered_bytes == 0
    conn2 = p.StratumConnection(max_line_bytes=256)
    with pytest.raises(p.RemoteProtocolError):
        conn2.receive_data(b"b" * 300 + b"\n")


def test_encoders() -> None:
    assert p.encode_true(5) == b'{"id":5,"result":true,"error":null}\n'
    assert orjson.loads(p.encode_true("a")) == {"id": "a", "result": True, "error": None}
    assert orjson.loads(p.encode_error(1, 23, "low")) == {
        "id": 1,
        "result": None,
        "error": [23, "low", None],
    }
    n = orjson.loads(p.encode_notification("mining.set_difficulty", [2]))
    assert n == {"id": None, "method": "mining.set_difficulty", "params": [2]}


_hexish = st.text(alphabet="0123456789abcdefABCDEFxX _+-g", max_size=12)


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(_hexish, st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.none()),
        min_size=5,
        max_size=5,
    ),
    st.integers(0, 2**31),
)
def test_submit_fast_path_agrees_with_the_checked_path(params: list[object], rid: int) -> None:
    """The inlined submit parser must accept exactly what the field-by-field one accepts."""
    line = orjson.dumps({"id": rid, "method": "mining.submit", "params": params})
    got = p.parse_line(line)
    try:
        want: p.Event = p._parse_submit(rid, params)
    except p._BadParams as exc:
        want = p.InvalidRequest(rid, f"mining.submit: {exc}", junk=False)
    assert got == want
