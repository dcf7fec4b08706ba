"""The base of every component's settings: the LONGTASK_ prefix, REDIS_URL, comma-separated
lists, and a docstring on every field: pydantic makes it the field's description, and
docs/settings.md is generated from those (Kopf's settings are documented the same way).

Reading the environment once, in a component's get_settings(), is all it does; it must
not hold a settings object at import nor know any component's fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from longtask_contracts import envvars
from longtask_runtime import redisconn

PREFIX = "LONGTASK_"
REDIS_URL = "redis://127.0.0.1:6379/0"
# What docs/settings.md shows as the default of a field whose default is computed at start.
SHOWN_DEFAULT = "shown_default"


def split_commas(value: object) -> object:
    """Split "a, b,,c" into ["a", "b", "c"]: items stripped, empty ones dropped; a list stays as it is."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# A list given as one comma-separated variable (not JSON, which pydantic-settings would expect).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]


def shown(default: str) -> dict[str, Any]:
    """Field(json_schema_extra=shown("the host name")): the default docs/settings.md shows for a
    field whose default_factory computes it on each machine."""
    return {SHOWN_DEFAULT: default}


class Base(BaseSettings):
    """Every field is read from LONGTASK_<FIELD NAME> (case-insensitive) unless it names its
    own variable with validation_alias; unknown LONGTASK_ variables are ignored."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", use_attribute_docstrings=True)

    redis_url: str = Field(default=REDIS_URL, validation_alias="REDIS_URL")
    """The Redis holding the queues, leases, events and ledgers: a redis:// or rediss:// URL with
    the database number (`longtask dev up` writes its own to .longtask/env). With
    LONGTASK_REDIS_SENTINELS its host and port are not used: it gives the data nodes' scheme
    (rediss://: TLS, to the Sentinels too), user, password, database and ssl_* options."""

    redis_sentinels: CommaList = Field(default_factory=list)
    """Redis Sentinels to ask where the master is, as host:port,host:port,...; empty: connect to
    REDIS_URL's host directly. Every component follows a failover through them (kombu's sentinel
    transport for Celery, redis-py's Sentinel elsewhere); docs/high-availability.md."""

    redis_master: str = redisconn.DEFAULT_MASTER
    """The master's name the Sentinels monitor (`sentinel monitor <name> ...`); used only with
    LONGTASK_REDIS_SENTINELS."""

    redis_sentinel_password: str = ""
    """The Sentinels' own password (their `requirepass`), if they have one; the data nodes'
    password stays in REDIS_URL."""

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_host_port(cls, value: list[str]) -> list[str]:
        redisconn.parse_sentinels(value)  # a ValueError here refuses the setting at start
        return value

    def redis_target(self) -> redisconn.Target:
        """Where this component's Redis clients connect (redisconn): REDIS_URL, or the Sentinels."""
        return redisconn.target(
            url=self.redis_url,
            sentinels=self.redis_sentinels,
            master=self.redis_master,
            sentinel_password=self.redis_sentinel_password,
        )


# Read by the Kubernetes client libraries when a component logs in, not by a settings class.
ENVIRONMENT = (
    envvars.Variable(
        name="KUBECONFIG",
        default="~/.kube/config",
        description="The kubeconfig file(s) a component logs in with outside a cluster; inside one, "
        "the pod's ServiceAccount is used instead (KUBERNETES_SERVICE_HOST/PORT, set by Kubernetes). "
        "`longtask dev up` writes its cluster's to .longtask/env.",
        readers=(envvars.GATEWAY, envvars.OPERATOR),
    ),
)
