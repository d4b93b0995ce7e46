"""Who may do what on Kafka: one SCRAM user per service, named as the service, with the topics it reads
and writes and its consumer groups; nothing else is allowed.

The broker runs the StandardAuthorizer with `allow.everyone.if.no.acl.found=false` and `admin` as its
only super user (flashes/kafka_deploy.py, deploy/kafka/), so only the fetcher writes lightcurves, only
relevance writes scores, only alerts writes alerts, only the API writes subscriptions. `apply` (the
`flashes kafka-acls` one-shot step, run as `admin`) creates every topic and these ACLs; it can run
again at any time (Kafka ignores an ACL that exists).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from flashes import kafka, topics
from flashes.errors import InfraError
from flashes.kafka import ensure_topics
from flashes.settings import Settings
from flashes.topics import TopicSpec

ADMIN = "admin"  # the broker's super user: creates topics and ACLs, the broker's own inter-broker login


@dataclass(frozen=True)
class Access:
    """What one service's user may do: read and write these topics, join these consumer groups."""

    reads: tuple[TopicSpec, ...]
    writes: tuple[TopicSpec, ...]
    groups: tuple[str, ...] = ()


# Every service beats (flashes/heartbeat.py) and may refuse an input it cannot use (a dead letter).
EVERY_SERVICE_WRITES = (topics.HEARTBEAT, topics.DEADLETTER)
# Processors read their state topic back after a rebalance and write it after each batch (flashes/processor.py),
# in consumer group flashes-{name}.
PLAN: dict[str, Access] = {
    "fetcher": Access(reads=(topics.FETCHSTATE,), writes=(topics.LIGHTCURVE, topics.FETCHSTATE)),
    "derive": Access(
        reads=(topics.LIGHTCURVE, topics.DERIVE_STATE),
        writes=(topics.DERIVED, topics.DERIVE_STATE),
        groups=("flashes-derive",),
    ),
    "relevance": Access(
        reads=(topics.LIGHTCURVE, topics.DERIVED, topics.RELEVANCE_STATE),
        writes=(topics.RELEVANCE, topics.RELEVANCE_STATE),
        groups=("flashes-relevance",),
    ),
    "alerts": Access(
        reads=(topics.RELEVANCE, topics.ALERTS_STATE),
        writes=(topics.ALERTS, topics.ALERTS_STATE),
        groups=("flashes-alerts",),
    ),
    # Matches alerts with the subscriptions it reads whole; reads its own log back at start (nothing sent twice).
    "delivery": Access(
        reads=(topics.ALERTS, topics.SUBSCRIPTIONS, topics.DELIVERY_RETRY, topics.DELIVERIES),
        writes=(topics.DELIVERY_RETRY, topics.DELIVERIES),
        groups=("flashes-delivery", "flashes-delivery-retry"),
    ),
    "sink": Access(reads=topics.STORED, writes=(), groups=("flashes-sink",)),
    # Writes subscriptions and queues test alerts (POST /subscriptions/{code}/test) for delivery.
    "api": Access(reads=(topics.SUBSCRIPTIONS,), writes=(topics.SUBSCRIPTIONS, topics.DELIVERY_RETRY)),
}


class Resource(IntEnum):
    """Kafka's ACL resource types (org.apache.kafka.common.resource.ResourceType)."""

    TOPIC = 2
    GROUP = 3


class Pattern(IntEnum):
    """Kafka's ACL pattern types (org.apache.kafka.common.resource.PatternType)."""

    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka's ACL operations (org.apache.kafka.common.acl.AclOperation); READ and WRITE imply DESCRIBE."""

    READ = 3
    WRITE = 4
    DESCRIBE = 8


ALLOW = 3  # org.apache.kafka.common.acl.AclPermissionType.ALLOW
TOPIC_PREFIX = "flashes."


@dataclass(frozen=True)
class Acl:
    """One grant: `User:{user}` may do `operation` on the resource from any host."""

    user: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL


def acls(plan: dict[str, Access] = PLAN) -> list[Acl]:
    """Every grant of the plan. Besides reading and writing, each user may describe the project's topics
    (names and offsets, not their records): ensure_topics then sees that they exist and creates nothing."""
    out: list[Acl] = []
    for user, access in plan.items():
        out.append(Acl(user, Resource.TOPIC, TOPIC_PREFIX, Operation.DESCRIBE, Pattern.PREFIXED))
        out += [Acl(user, Resource.TOPIC, t.name, Operation.READ) for t in dict.fromkeys(access.reads)]
        out += [
            Acl(user, Resource.TOPIC, t.name, Operation.WRITE)
            for t in dict.fromkeys(access.writes + EVERY_SERVICE_WRITES)
        ]
        out += [Acl(user, Resource.GROUP, g, Operation.READ) for g in access.groups]
    return out


async def apply(settings: Settings, plan: dict[str, Access] = PLAN) -> int:
    """As the super user (settings' Kafka login): create every topic, then every ACL of the plan; the number of
    ACLs. InfraError names the first grant the broker refused."""
    await ensure_topics(settings)
    client = kafka.client(settings)
    await client.bootstrap()
    try:
        grants = acls(plan)
        # One grant per request (aiokafka builds CreateAcls with one creation); a broker forwards them to the
        # controller, which answers once the ACL is in the metadata log.
        responses = await asyncio.gather(*(client.send(client.get_random_node(), _request(a)) for a in grants))
    finally:
        await client.close()
    for acl, response in zip(grants, responses):
        code, message = response.creation_responses[0]
        if code:
            raise InfraError(f"Kafka refused the ACL {acl}: {for_code(code).__name__} {message or ''}".rstrip())
    return len(grants)


def _request(acl: Acl) -> CreateAclsRequest:
    return CreateAclsRequest(
        resource_type=acl.resource,
        resource_name=acl.name,
        resource_pattern_type_filter=acl.pattern,
        principal=f"User:{acl.user}",
        host="*",
        operation=acl.operation,
        permission_type=ALLOW,
    )
