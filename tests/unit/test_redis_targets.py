"""Where the settings point every Redis connection (redisconn.Target) and Celery's broker.

Covers: without Sentinels the broker is REDIS_URL itself; with them it is kombu's sentinel
transport (`sentinel://...;sentinel://...`, each carrying the data nodes' password and
database, which kombu reads), with the master's name and the Sentinels' own options
(password, TLS) as transport options and the priority options kept; a rediss:// URL makes
every connection TLS, its ssl_* options going to the data nodes (broker_use_ssl) and to the
Sentinels; a Sentinel that is not host:port is refused.
"""

from __future__ import annotations

import pytest
from celery import Celery
from kombu import Connection

from longtask_contracts import names
from longtask_runtime import celeryconfig, redisconn


def _broker(target: redisconn.Target | str) -> Celery:
    app = Celery("t")
    celeryconfig.configure(app, redis_url=target)
    return app


def test_without_sentinels_the_broker_is_the_url():
    app = _broker("redis://:pw@redis:6379/3")
    assert app.conf.broker_url == "redis://:pw@redis:6379/3"
    assert "master_name" not in app.conf.broker_transport_options


def test_with_sentinels_the_broker_is_the_sentinel_transport():
    target = redisconn.target(
        url="redis://:p%40ss@ignored:1/3",
        sentinels=["s1:26379", "s2:26380"],
        master="main",
        sentinel_password="spw",
    )
    app = _broker(target)
    assert app.conf.broker_url == "sentinel://:p%40ss@s1:26379/3;sentinel://:p%40ss@s2:26380/3"
    options = app.conf.broker_transport_options
    assert options["master_name"] == "main"
    assert options["sentinel_kwargs"]["password"] == "spw"
    assert options["priority_steps"] == names.PRIORITY_STEPS
    assert app.conf.broker_use_ssl is None
    connection = Connection(app.conf.broker_url)
    assert connection.transport_cls == "sentinel"
    assert (connection.password, connection.virtual_host) == ("p@ss", "3")
    assert connection.alt == app.conf.broker_url.split(";")


def test_rediss_makes_data_nodes_and_sentinels_tls():
    target = redisconn.target(
        url="rediss://:pw@ignored:1/0?ssl_ca_certs=/etc/tls/ca.crt",
        sentinels=["s1:26379"],
        master="longtask",
        sentinel_password="",
    )
    assert target.tls
    assert target.node_kwargs() | {"ssl": True} == target.node_kwargs()
    assert target.node_kwargs()["ssl_ca_certs"] == "/etc/tls/ca.crt"
    assert "host" not in target.node_kwargs() and "port" not in target.node_kwargs()
    assert target.sentinel_kwargs()["ssl"] is True
    assert target.sentinel_kwargs()["ssl_ca_certs"] == "/etc/tls/ca.crt"
    assert "password" not in target.sentinel_kwargs()
    app = _broker(target)
    assert app.conf.broker_use_ssl == {"ssl_ca_certs": "/etc/tls/ca.crt", "ssl_cert_reqs": "required"}


@pytest.mark.parametrize("bad", ["s1", "s1:", ":26379", "s1:port"])
def test_a_sentinel_must_be_host_port(bad: str):
    with pytest.raises(redisconn.SentinelsInvalid):
        redisconn.parse_sentinels(["s0:26379", bad])
