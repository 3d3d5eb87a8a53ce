"""The APIs the door serves: one table, by API key, of each handler and the versions it serves,
which is also exactly what ApiVersions advertises.

Why these ranges: each starts at the lowest version kio has, which is also what Kafka 4 serves
(KIP-896); librdkafka only turns a feature on when the ranges *include* particular old versions
(MsgVer2 needs Produce 3 and Fetch 4, the balanced consumer FindCoordinator 0 and the group
APIs 0, SASL SaslHandshake 0 and 1...), so a range that starts higher silently switches
features off. Each ends where a client of those listed in the contract stops, or before a
version changes meaning: Fetch and Produce from 13 name topics by id only.
"""

from __future__ import annotations

from typing import Any, Final

from kio.schema.errors import ErrorCode

from api.kafka import fetch, groups, metadata, offsets, produce, sasl
from api.kafka.codec import build, respond, response_class
from api.kafka.door import Api, Connection, Door

API_VERSIONS: Final = 18


async def api_versions(door: Door, conn: Connection, request: Any) -> Any:
    return respond(request, error_code=ErrorCode.none, api_keys=advertised())


def advertised() -> list[dict[str, int]]:
    return [
        {"api_key": api.key, "min_version": api.versions[0], "max_version": api.versions[1]}
        for api in sorted(APIS.values(), key=lambda api: api.key)
    ]


def unsupported_api_versions() -> Any:
    """The answer to an ApiVersions of a version not served (a newer client's): version 0
    with ``UNSUPPORTED_VERSION`` and the ranges served, so the client can pick (KIP-511)."""
    return build(
        response_class(API_VERSIONS, 0),
        error_code=ErrorCode.unsupported_version,
        api_keys=advertised(),
    )


APIS: Final[dict[int, Api]] = {
    api.key: api
    for api in (
        Api(0, "Produce", (3, 9), produce.produce),
        Api(1, "Fetch", (4, 12), fetch.fetch),
        Api(2, "ListOffsets", (1, 7), fetch.list_offsets),
        Api(3, "Metadata", (1, 12), metadata.metadata),
        Api(8, "OffsetCommit", (2, 8), offsets.offset_commit),
        Api(9, "OffsetFetch", (1, 7), offsets.offset_fetch),
        Api(10, "FindCoordinator", (0, 3), groups.find_coordinator),
        Api(11, "JoinGroup", (0, 7), groups.join_group),
        Api(12, "Heartbeat", (0, 4), groups.heartbeat),
        Api(13, "LeaveGroup", (0, 4), groups.leave_group),
        Api(14, "SyncGroup", (0, 5), groups.sync_group),
        Api(15, "DescribeGroups", (0, 5), groups.describe_groups),
        Api(16, "ListGroups", (0, 4), groups.list_groups),
        Api(17, "SaslHandshake", (0, 1), sasl.handshake, before_auth=True),
        Api(API_VERSIONS, "ApiVersions", (0, 3), api_versions, before_auth=True),
        Api(22, "InitProducerId", (0, 4), produce.init_producer_id),
        Api(36, "SaslAuthenticate", (0, 2), sasl.authenticate, before_auth=True),
    )
}
