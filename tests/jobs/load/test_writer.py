"""The writer's single-node fast path: RESP built by Arrow, replies checked in bulk, keys built per batch."""

from __future__ import annotations

import hiredis
import pyarrow as pa
import pytest
from redis.exceptions import BusyLoadingError, ResponseError

from jobs.load import resp
from jobs.load.writer import Target, list_keys, write_rows
from recsys import keys
from recsys.encoding import decode_list
from recsys.schema import ValidationError

pytestmark = [pytest.mark.redis]


def test_set_and_del_commands_are_the_bytes_redis_py_packs() -> None:
    ks = pa.array([b"recommendations:user:u1", b"k" * 300], pa.binary())
    vs = pa.array([b"RL\x01\x00\r\n$*", b"\x00" * 2000], pa.binary())
    sets = resp.set_commands(ks, vs, ttl=3600).to_pylist()
    pairs = zip(ks.to_pylist(), vs.to_pylist(), strict=True)
    assert sets == [hiredis.pack_command(("SET", k, v, "EX", 3600)) for k, v in pairs]
    assert resp.del_commands(ks).to_pylist() == [hiredis.pack_command(("DEL", k)) for k in ks.to_pylist()]


def test_chunks_cover_the_commands_in_order_without_gaps() -> None:
    cmds = resp.del_commands(pa.array([f"k{i}".encode() for i in range(10)], pa.binary())).slice(3, 7)
    got = resp.chunks(cmds, 3)
    assert [n for _, n in got] == [3, 3, 1]
    assert b"".join(bytes(c) for c, _ in got) == b"".join(cmds.to_pylist())
    assert resp.chunks(cmds.slice(0, 0), 3) == []


def test_list_keys_match_the_keys_module_and_reject_bad_ids() -> None:
    ids = pa.array(["u1", "U-9.x:1", "a" * 64])
    assert list_keys(ids, kind="user").to_pylist() == [keys.user_recs_key(i).encode() for i in ids.to_pylist()]
    assert list_keys(ids, kind="similar").to_pylist() == [keys.similar_key(i).encode() for i in ids.to_pylist()]
    assert list_keys(pa.array([None, "Home & Garden"]), kind="popular").to_pylist() == [
        b"popular:global",
        b"popular:category:home%20%26%20garden",
    ]
    for bad in (["u1", "u 2"], ["u1", None], ["a" * 65]):
        with pytest.raises(ValidationError, match="user_id"):
            list_keys(pa.array(bad, pa.string()), kind="user")


def test_sender_raises_error_replies_and_reconnects(redis_server: str, redis_client) -> None:
    sender = resp.RespSender(redis_client)
    good = resp.set_commands(pa.array([b"a", b"b"]), pa.array([b"1", b"2"]), ttl=60)
    bad = pa.array([hiredis.pack_command(("SET", "c", "3")), hiredis.pack_command(("LPUSH", "c", "x"))], pa.binary())
    [(chunk, n)] = resp.chunks(bad, 2)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        sender.send(chunk, n=n, reply=resp.OK)
    [(chunk, n)] = resp.chunks(good, 2)
    sender.send(chunk, n=n, reply=resp.OK)  # on a fresh connection after the failure
    assert redis_client.mget("a", "b", "c") == [b"1", b"2", b"3"]
    sender.close()
    with pytest.raises(BusyLoadingError):
        resp._raise_reply(hiredis.ReplyError("LOADING Redis is loading the dataset in memory"))


def test_write_rows_from_arrow_batches_sets_deletes_and_counts(redis_server: str, redis_client) -> None:
    redis_client.set("recommendations:user:u2", b"stale")
    batch = pa.RecordBatch.from_pydict(
        {
            "id": ["u0", "u1", "u2", "u3"],
            "product_ids_joined": ["x", "p1\x00p2", "", "p3"],
            "scores": pa.array([[1.0], [0.9, 0.5], [], [0.1]], pa.list_(pa.float32())),
            "sources": pa.array([[1], [1, 4], [], [2]], pa.list_(pa.int32())),
            "created_at": [0.0, 1.5, 1.5, 2.0],
        }
    )
    target = Target(redis_server, False, 2.0, pipeline_size=1)
    stats = write_rows([batch.slice(1)], kind="user", ttl=3600, target=target)  # u0 is outside the slice
    assert stats["keys"] == 2 and stats["deleted"] == 1 and stats["retries"] == 0
    assert sorted(redis_client.keys("*")) == [b"recommendations:user:u1", b"recommendations:user:u3"]
    u1 = decode_list(redis_client.get("recommendations:user:u1"))
    assert u1.product_ids == ["p1", "p2"] and u1.sources.tolist() == [1, 4] and u1.created_at == 1.5
    assert stats["value_bytes"] == sum(len(redis_client.get(k)) for k in redis_client.keys("*"))
    assert 3500 < redis_client.ttl("recommendations:user:u3") <= 3600


def test_eval_commands_are_the_bytes_redis_py_packs() -> None:
    script = b"return redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))"
    ks = pa.array([b"history:user:u1", b"history:user:u2", b"history:user:u3"], pa.binary())
    elements = pa.array([['{"p":"\u00e9"}', "x" * 300], ["b"], ["c", "d", "e"]])
    got = resp.eval_commands(script, ks, elements, ttl=7200).to_pylist()
    rows = zip(ks.to_pylist(), elements.to_pylist(), strict=True)
    assert got == [hiredis.pack_command(("EVAL", script, 1, k, 7200, *e)) for k, e in rows]
    # A slice of a list array starts its values at an offset: the commands still hold the sliced rows only.
    assert resp.eval_commands(script, ks.slice(1), elements.slice(1), ttl=60).to_pylist() == [
        hiredis.pack_command(("EVAL", script, 1, k, 60, *e))
        for k, e in zip(ks.to_pylist()[1:], elements.to_pylist()[1:], strict=True)
    ]
    with pytest.raises(ValueError, match="null"):
        resp.eval_commands(script, ks.slice(0, 1), pa.array([["a", None]]), ttl=60)


def test_write_rows_seeds_history_through_resp_and_keeps_existing_lists(redis_server: str, redis_client) -> None:
    redis_client.rpush("history:user:u2", "from-the-api")
    batch = pa.RecordBatch.from_pydict(
        {
            "id": ["u0", "u1", "u2", "u3", "u4"],
            "elements": pa.array([["x"], ["e2", "e1"], ["lake"], [], None], pa.list_(pa.string())),
        }
    )
    target = Target(redis_server, False, 2.0, pipeline_size=2)
    stats = write_rows([batch.slice(1)], kind="history", ttl=600, target=target)
    assert stats["keys"] == 2 and stats["retries"] == 0  # u1 and u2 were sent; u3 and u4 have no elements
    assert sorted(redis_client.keys("*")) == [b"history:user:u1", b"history:user:u2"]
    assert redis_client.lrange("history:user:u1", 0, -1) == [b"e2", b"e1"]
    assert redis_client.lrange("history:user:u2", 0, -1) == [b"from-the-api"]
    assert 590 < redis_client.ttl("history:user:u1") <= 600
    assert redis_client.ttl("history:user:u2") == -1  # an existing list keeps what it had, TTL included
    bad = pa.RecordBatch.from_pydict({"id": ["bad id"], "elements": [["e"]]})
    with pytest.raises(ValidationError, match="user_id"):
        write_rows([bad], kind="history", ttl=600, target=target)
