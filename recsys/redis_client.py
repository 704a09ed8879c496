"""One way to open a Redis client, shared by the bulk load (executors) and the serving API.

``redis.cluster`` selects redis-py's :class:`~redis.cluster.RedisCluster` (slot routing, MOVED/ASK handling,
topology refresh) instead of a single-node :class:`~redis.Redis`; the key format is the same in both modes.
A cluster has only database 0, so a ``/0`` in the URL is dropped there and any other number is an error.

Example:
    >>> client = open_client("redis://127.0.0.1:6379/0", cluster=False, socket_timeout_s=2.0)
    >>> client.ping()
    True
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis


def cluster_url(url: str) -> str:
    """``url`` without its database path (a cluster has only database 0).

    Raises:
        ValueError: The URL names a database other than 0, or is not a redis:// or rediss:// URL.

    Example:
        >>> cluster_url("redis://:pw@10.0.0.1:7000/0")
        'redis://:pw@10.0.0.1:7000'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"redis.url must be a redis:// or rediss:// URL in cluster mode, got {url!r}")
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"redis.url names database {db!r}; a Redis Cluster has only database 0")
    return urlunsplit((parts.scheme, parts.netloc, "", parts.query, parts.fragment))


def open_client(
    url: str, *, cluster: bool, socket_timeout_s: float, health_check_interval: int = 0, protocol: int | None = None
) -> Any:
    """A lazily connecting client for ``url``: ``RedisCluster`` when ``cluster``, else ``Redis``.

    Args:
        url: ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS). In cluster mode any node of the
            cluster; the others are discovered.
        cluster: Use the cluster client.
        socket_timeout_s: Socket and connect timeout of every call.
        health_check_interval: Seconds after which an idle connection is PINGed before use (0: never).
        protocol: RESP version (2 or 3); ``None`` for redis-py's default.

    Returns:
        A redis-py client (both types share the command methods, ``pipeline`` and ``register_script``).
    """
    if socket_timeout_s <= 0:
        raise ValueError(f"socket_timeout_s must be positive, got {socket_timeout_s}")
    opts: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
    }
    if health_check_interval:
        opts["health_check_interval"] = health_check_interval
    if protocol is not None:
        opts["protocol"] = protocol
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(cluster_url(url), **opts)
    return redis.Redis.from_url(url, **opts)
