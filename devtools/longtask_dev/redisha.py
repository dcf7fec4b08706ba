"""The dev cluster's Redis with failover (`longtask dev up --redis-ha`): a primary, one
replica and three Sentinels, all local redis-server processes on free loopback ports.

The Sentinels declare the primary down after DOWN_AFTER_MS without an answer and need two
of three to agree (quorum 2), so a SIGKILLed primary is replaced by the replica within a
few seconds. It starts, inspects and kills those processes; it must not know what longtask
keeps in Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis

from longtask_dev import procs

MASTER = "longtask"  # the name the Sentinels monitor (LONGTASK_REDIS_MASTER)
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 2000  # no answer this long: subjectively down (then objectively, by quorum)
FAILOVER_TIMEOUT_MS = 6000  # a failover not done by then is tried again


class RedisHA:
    """Nodes `redis` (the first primary) and `redis-replica`, Sentinels `redis-sentinel-N`.

    `server` is redis-server's path; `add` starts and supervises a child (Cluster.add);
    `redis_child` makes a redis-server child on a port with its data folder, and
    `wait_for_redis` waits for its PING (cluster.redis_child, cluster.wait_for_redis).
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        server: str,
        add: Callable[[procs.Child], procs.Child],
        redis_child: Callable[..., procs.Child],
        wait_for_redis: Callable[..., None],
    ) -> None:
        self.state_dir = state_dir
        self._server = server
        self._add = add
        self._redis_child = redis_child
        self._wait_for_redis = wait_for_redis
        self.node_ports: dict[str, int] = {}  # child name -> port, data nodes
        self.sentinel_ports: list[int] = []
        self.nodes: dict[str, procs.Child] = {}

    @property
    def sentinels(self) -> str:
        """LONGTASK_REDIS_SENTINELS: host:port,host:port,host:port."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> int:
        """Start the primary, its replica, then the Sentinels; return the primary's port once
        every Sentinel sees the replica and the other Sentinels (a failover can then happen)."""
        primary = self._node("redis")
        self._node("redis-replica", replica_of=primary)
        for i in range(1, SENTINELS + 1):
            self._sentinel(f"redis-sentinel-{i}", primary=primary)
        procs.wait_until(self._ready, timeout=60, what="the Sentinels to see the replica and each other")
        return primary

    def _node(self, name: str, *, replica_of: int | None = None) -> int:
        port = procs.free_port()
        child = self._redis_child(
            port=port, data=self.state_dir / name, log=self.state_dir / "logs" / f"{name}.log"
        )
        if replica_of is not None:
            child.argv = [*child.argv, "--replicaof", "127.0.0.1", str(replica_of)]
        self.nodes[name] = self._add(child)
        self.node_ports[name] = port
        self._wait_for_redis(port=port, child=child)
        return port

    def _sentinel(self, name: str, *, primary: int) -> None:
        port = procs.free_port()
        folder = self.state_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"  # the Sentinel rewrites it with what it learns
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            "protected-mode no\n"
            "daemonize no\n"
            f"dir {folder}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        # Debian's redis-sentinel is this same binary started with --sentinel.
        argv = [self._server, str(conf), "--sentinel"]
        self._add(procs.Child(name, argv, self.state_dir / "logs" / f"{name}.log"))
        self.sentinel_ports.append(port)

    def _ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as sentinel:
                    state = sentinel.sentinel_master(MASTER)
            except redis.RedisError:
                return False
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < SENTINELS - 1:
                return False
        return True

    def primary_port(self) -> int | None:
        """The port of the node the Sentinels name master (the first one that answers), and
        which says it is one; None while no Sentinel answers or the node does not agree."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as sentinel:
                    address = sentinel.sentinel_get_master_addr_by_name(MASTER)
                if not address:
                    continue
                with redis.Redis(port=int(address[1]), socket_timeout=1, decode_responses=True) as node:
                    role = node.role()
            except redis.RedisError:
                continue
            if role and role[0] == "master":
                return int(address[1])
        return None

    def primary_name(self) -> str | None:
        """The child name (`redis` or `redis-replica`) of the current primary, if known."""
        port = self.primary_port()
        return next((name for name, p in self.node_ports.items() if p == port), None)

    def kill_primary(self) -> int:
        """SIGKILL the current primary, as a crash or a lost node would end it; its port."""
        name = self.primary_name()
        if name is None:
            raise RuntimeError("no primary to kill: the Sentinels name none that answers")
        self.nodes[name].kill()
        return self.node_ports[name]

    def wait_failover(self, *, old: int, timeout: float = 60) -> int:
        """Wait until a node other than port `old` is the primary; its port."""
        found: list[int] = []

        def promoted() -> bool:
            port = self.primary_port()
            if port is not None and port != old:
                found.append(port)
                return True
            return False

        procs.wait_until(promoted, timeout=timeout, what="the Sentinels to promote the replica", interval=0.1)
        return found[0]
