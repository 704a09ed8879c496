"""The single-node fast path of the bulk load: a batch's commands as RESP bytes, one ``sendall`` per pipeline.

redis-py packs every command of a pipeline in Python and parses every reply through its parser (about 10 us
per ``SET`` of a 1 KB value, more than Redis spends executing it). Here a whole Arrow batch of
``SET key value EX ttl`` (or ``DEL key``) commands is built by Arrow's ``binary_join_element_wise`` as one
contiguous buffer; each pipeline of ``pipeline_size`` commands is a zero-copy slice of it, written with the
redis-py connection's ``send_packed_command`` (so AUTH, SELECT and TLS are redis-py's) and answered by
``pipeline_size`` replies read in bulk and parsed by hiredis. Redis Cluster keeps redis-py's cluster pipeline
(slot routing, MOVED/ASK) in :mod:`jobs.load.writer`.

Example:
    >>> sender = RespSender(redis.Redis.from_url(url))
    >>> sender.send(set_commands(keys, values, ttl=3600), n=len(keys), reply=OK)
"""

from __future__ import annotations

from typing import Any

import hiredis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

OK = b"OK"  # the reply of SET
COUNT = int  # the reply type of DEL
_READ_CHUNK = 1 << 16


def _length_prefix(values: pa.Array) -> pa.Array:
    return pc.binary_length(values).cast(pa.string()).cast(pa.binary())


def set_commands(keys: pa.Array, values: pa.Array, *, ttl: int) -> pa.Array:
    """``SET key value EX ttl`` per row as RESP, one binary element per command.

    Example:
        >>> set_commands(pa.array([b"k"]), pa.array([b"v"]), ttl=60)[0].as_py()
        b'*5\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n$2\\r\\nEX\\r\\n$2\\r\\n60\\r\\n'
    """
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    tail = b"\r\n$2\r\nEX\r\n$%d\r\n%d\r\n" % (len(str(ttl)), ttl)
    return pc.binary_join_element_wise(
        b"*5\r\n$3\r\nSET\r\n$", _length_prefix(keys), b"\r\n", keys,
        b"\r\n$", _length_prefix(values), b"\r\n", values, tail, b"",
    )


def del_commands(keys: pa.Array) -> pa.Array:
    """``DEL key`` per row as RESP, one binary element per command."""
    return pc.binary_join_element_wise(b"*2\r\n$3\r\nDEL\r\n$", _length_prefix(keys), b"\r\n", keys, b"\r\n", b"")


def eval_commands(script: bytes, keys: pa.Array, elements: pa.Array, *, ttl: int) -> pa.Array:
    """``EVAL script 1 key ttl element...`` per row as RESP, one binary element per command.

    ``elements`` is a list array (one list of binary or string elements per key); a row with an empty list
    still gets its command (the caller drops such rows first).

    Example:
        >>> eval_commands(b"return 1", pa.array([b"k"]), pa.array([["a"]]), ttl=60)[0].as_py()
        b'*6\\r\\n$4\\r\\nEVAL\\r\\n$8\\r\\nreturn 1\\r\\n$1\\r\\n1\\r\\n$1\\r\\nk\\r\\n$2\\r\\n60\\r\\n$1\\r\\na\\r\\n'
    """
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    if elements.null_count or pc.list_flatten(elements).null_count:
        raise ValueError("an EVAL element list holds a null")
    flat = pc.list_flatten(elements).cast(pa.binary())
    pieces = pc.binary_join_element_wise(b"$", _length_prefix(flat), b"\r\n", flat, b"\r\n", b"")
    offsets = pc.subtract(elements.offsets, elements.offsets[0])
    args = pc.binary_join(pa.ListArray.from_arrays(offsets, pieces), b"")
    counts = pc.add(pc.list_value_length(elements), 5).cast(pa.string()).cast(pa.binary())
    head = b"\r\n$4\r\nEVAL\r\n$%d\r\n%s\r\n$1\r\n1\r\n$" % (len(script), script)
    ttl_arg = b"\r\n$%d\r\n%d\r\n" % (len(str(ttl)), ttl)
    return pc.binary_join_element_wise(
        b"*", counts, head, _length_prefix(keys), b"\r\n", keys, ttl_arg, args, b""
    )


def _buffers(commands: pa.Array) -> tuple[memoryview, list[int]]:
    """The data buffer of a binary array and its offsets (as Python ints, relative to the buffer)."""
    bufs = commands.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=len(commands) + 1, offset=4 * commands.offset)
    data = memoryview(bufs[2]) if bufs[2] is not None else memoryview(b"")
    return data, offsets.tolist()


def chunks(commands: pa.Array, size: int) -> list[tuple[memoryview, int]]:
    """Zero-copy slices of ``size`` commands (the last one shorter) with their command counts."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if commands.null_count:
        raise ValueError("a RESP command array holds a null")
    data, offsets = _buffers(commands)
    n = len(commands)
    return [(data[offsets[s] : offsets[min(s + size, n)]], min(s + size, n) - s) for s in range(0, n, size)]


class RespSender:
    """One connection of the client's pool settings, used only to send pre-built RESP and read the replies.

    Any failure disconnects it (a half-read pipeline cannot be resumed); the next :meth:`send` reconnects.
    Connection errors, timeouts and ``LOADING`` replies raise redis-py's ``ConnectionError`` /
    ``TimeoutError`` (``BusyLoadingError`` is one), which the writer retries; any other error reply raises
    ``ResponseError``.
    """

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        self.conn = pool.connection_class(**pool.connection_kwargs)
        self._buf = bytearray(_READ_CHUNK)

    def send(self, chunk: memoryview, *, n: int, reply: Any) -> None:
        """Sends ``n`` commands packed in ``chunk`` and checks that each reply is ``reply`` (or of that type)."""
        try:
            self.conn.send_packed_command([chunk], check_health=False)
            self._read_replies(n, reply)
        except BaseException:
            self.conn.disconnect()
            raise

    def _read_replies(self, n: int, expected: Any) -> None:
        reader = hiredis.Reader()
        sock = self.conn._sock  # redis-py's socket, connected by send_packed_command
        got = 0
        while got < n:
            try:
                size = sock.recv_into(self._buf)
            except TimeoutError as exc:  # socket.timeout
                raise RedisTimeoutError("Timeout reading from socket") from exc
            except OSError as exc:
                raise RedisConnectionError(f"Error while reading from socket: {exc}") from exc
            if not size:
                raise RedisConnectionError("Connection closed by server.")
            reader.feed(self._buf, 0, size)
            while (r := reader.gets()) is not False:
                got += 1
                if r != expected and not (isinstance(expected, type) and type(r) is expected):
                    _raise_reply(r)

    def close(self) -> None:
        self.conn.disconnect()


def _raise_reply(reply: Any) -> None:
    if isinstance(reply, hiredis.ReplyError):
        message = str(reply)
        if message.startswith("LOADING"):
            raise BusyLoadingError(message)
        raise ResponseError(message)
    raise ResponseError(f"unexpected reply {reply!r:.80}")

