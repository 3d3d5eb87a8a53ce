"""Consumer groups, the classic protocol (the client assigns partitions; the coordinator only
gathers the members, hands the leader their metadata and everyone their assignment).

One coordinator for the whole cluster: the listening process that holds the coordinator's
leadership lock (``nodes.py``). Its groups live in its memory, as a Kafka coordinator's do
between loads of ``__consumer_offsets``: when it goes, members find the new coordinator and
join again. What must outlive it, the committed offsets, is in the store (``kafka_offsets``).

A group goes Empty → PreparingRebalance (JoinGroup: wait for every known member to join again,
at most the longest rebalance timeout; who does not is dropped) → CompletingRebalance (the
leader's SyncGroup brings the assignment) → Stable; a join, a leave or an expired session starts
another round, which Heartbeat tells the others about (``REBALANCE_IN_PROGRESS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from kio.schema.errors import ErrorCode

from api.kafka.codec import respond
from api.kafka.door import Connection, Door
from api.kafka.nodes import Nodes
from broker.kafka import CommittedOffset, KafkaState

log = structlog.get_logger(component="cairn.kafka")

EMPTY: Final = "Empty"
PREPARING: Final = "PreparingRebalance"
COMPLETING: Final = "CompletingRebalance"
STABLE: Final = "Stable"
GROUP_KEY: Final = 0
EXPIRY_CHECK_S: Final = 0.5
MAX_GROUP_ID: Final = 255


@dataclass
class Member:
    member_id: str
    client_id: str
    client_host: str
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_s: float
    rebalance_timeout_s: float
    group_instance_id: str | None
    seen: float
    assignment: bytes = b""
    joining: asyncio.Future[dict[str, Any]] | None = None
    syncing: asyncio.Future[tuple[ErrorCode, bytes]] | None = None

    def metadata(self, protocol: str) -> bytes:
        return next(data for name, data in self.protocols if name == protocol)


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    promised: set[str] = field(default_factory=set)
    """Member ids handed out with MEMBER_ID_REQUIRED, not joined yet."""
    deadline: asyncio.TimerHandle | None = None

    def supported(self) -> set[str]:
        """The protocols every member supports."""
        names: set[str] | None = None
        for member in self.members.values():
            theirs = {name for name, _ in member.protocols}
            names = theirs if names is None else names & theirs
        return names or set()


Key = tuple[str, int]


class Offsets:
    """The committed offsets of the groups this coordinator has touched."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[Key, CommittedOffset]] = {}

    def clear(self) -> None:
        self._groups.clear()

    async def of(self, state: KafkaState, group_id: str) -> dict[Key, CommittedOffset]:
        known = self._groups.get(group_id)
        if known is None:
            rows = await state.committed(group_id)
            known = self._groups[group_id] = {(r.topic, r.partition_index): r for r in rows}
        return known


class Coordinator:
    def __init__(self, nodes: Nodes) -> None:
        self._nodes = nodes
        self.groups: dict[str, Group] = {}
        self.offsets = Offsets()

    @property
    def active(self) -> bool:
        return self._nodes.coordinating

    def reset(self) -> None:
        """The lead is lost: the groups are another coordinator's now."""
        for group in self.groups.values():
            self._cancel_waits(group, ErrorCode.not_coordinator)
        self.groups.clear()
        self.offsets.clear()

    def group(self, group_id: str) -> Group:
        found = self.groups.get(group_id)
        if found is None:
            found = self.groups[group_id] = Group(group_id)
        return found

    async def expire_sessions(self) -> None:
        """Drop members whose session ran out (no heartbeat); a member waiting in a join is
        not expired (the rebalance timeout covers it)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            now = loop.time()
            for group in list(self.groups.values()):
                gone = [
                    m.member_id
                    for m in group.members.values()
                    if m.joining is None and now - m.seen > m.session_timeout_s
                ]
                for member_id in gone:
                    log.info("kafka_member_expired", group=group.group_id, member=member_id)
                    self.remove(group, member_id)

    def remove(self, group: Group, member_id: str) -> None:
        member = group.members.pop(member_id, None)
        if member is None:
            return
        if member.joining is not None and not member.joining.done():
            member.joining.set_result({"error_code": ErrorCode.unknown_member_id})
        if member.syncing is not None and not member.syncing.done():
            member.syncing.set_result((ErrorCode.unknown_member_id, b""))
        if group.members:
            self.prepare(group, f"{member_id} left")
            self.try_complete(group)
        else:
            self._empty(group)

    def prepare(self, group: Group, why: str) -> None:
        """Start a rebalance (if none is under way): members must join again."""
        if group.state == PREPARING:
            return
        log.info("kafka_group_rebalancing", group=group.group_id, why=why)
        group.state = PREPARING
        for member in group.members.values():
            if member.syncing is not None and not member.syncing.done():
                member.syncing.set_result((ErrorCode.rebalance_in_progress, b""))
        timeout = max((m.rebalance_timeout_s for m in group.members.values()), default=0.0)
        loop = asyncio.get_running_loop()
        group.deadline = loop.call_later(timeout, self._join_deadline, group)

    def _join_deadline(self, group: Group) -> None:
        group.deadline = None
        for member_id in [m.member_id for m in group.members.values() if m.joining is None]:
            group.members.pop(member_id)
        if group.members:
            self.try_complete(group)
        else:
            self._empty(group)

    def try_complete(self, group: Group) -> None:
        """Once every member has joined: a new generation, its protocol, its leader; each
        member's join is answered (the leader's with everyone's metadata)."""
        if group.state != PREPARING or not group.members:
            return
        if any(m.joining is None for m in group.members.values()):
            return
        if group.deadline is not None:
            group.deadline.cancel()
            group.deadline = None
        supported = group.supported()
        votes: dict[str, int] = {}
        for member in group.members.values():
            first = next(name for name, _ in member.protocols if name in supported)
            votes[first] = votes.get(first, 0) + 1
        protocol = max(votes, key=lambda name: votes[name])
        group.generation += 1
        group.protocol = protocol
        group.protocol_type = next(iter(group.members.values())).protocol_type
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        everyone = [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "metadata": m.metadata(protocol),
            }
            for m in group.members.values()
        ]
        for member in group.members.values():
            joining, member.joining = member.joining, None
            assert joining is not None
            if not joining.done():
                joining.set_result(
                    {
                        "error_code": ErrorCode.none,
                        "generation_id": group.generation,
                        "protocol_type": group.protocol_type,
                        "protocol_name": protocol,
                        "leader": group.leader,
                        "member_id": member.member_id,
                        "members": everyone if member.member_id == group.leader else [],
                    }
                )

    def _empty(self, group: Group) -> None:
        if group.deadline is not None:
            group.deadline.cancel()
            group.deadline = None
        group.state = EMPTY
        group.leader = None
        group.protocol = None

    def _cancel_waits(self, group: Group, code: ErrorCode) -> None:
        if group.deadline is not None:
            group.deadline.cancel()
        for member in group.members.values():
            if member.joining is not None and not member.joining.done():
                member.joining.set_result({"error_code": code})
            if member.syncing is not None and not member.syncing.done():
                member.syncing.set_result((code, b""))


def _timeout_s(value: Any, default: float) -> float:
    return value.total_seconds() if value is not None else default


def _not_coordinator(door: Door) -> bool:
    return not door.coordinator.active


async def find_coordinator(door: Door, conn: Connection, request: Any) -> Any:
    def unavailable(why: str) -> Any:
        return respond(
            request,
            error_code=ErrorCode.coordinator_not_available,
            error_message=why,
            node_id=-1,
            host="",
            port=-1,
        )

    if getattr(request, "key_type", GROUP_KEY) != GROUP_KEY:
        return unavailable("transactions are not offered")
    coordinator = door.nodes.coordinator()
    if coordinator is None:
        return unavailable("no node coordinates the groups yet")
    return respond(
        request,
        error_code=ErrorCode.none,
        node_id=coordinator.node_id,
        host=coordinator.host,
        port=coordinator.port,
    )


async def join_group(door: Door, conn: Connection, request: Any) -> Any:
    def refused(code: ErrorCode, member_id: str = "") -> Any:
        return respond(
            request,
            error_code=code,
            generation_id=-1,
            protocol_name="",
            leader="",
            member_id=member_id,
            members=[],
        )

    if _not_coordinator(door):
        return refused(ErrorCode.not_coordinator)
    if not request.group_id or len(request.group_id) > MAX_GROUP_ID:
        return refused(ErrorCode.invalid_group_id)
    coordinator = door.coordinator
    group = coordinator.group(request.group_id)
    protocols = [(p.name, bytes(p.metadata)) for p in request.protocols]
    if not protocols or (
        group.members
        and (
            request.protocol_type != group.protocol_type
            or not group.supported() & {name for name, _ in protocols}
        )
    ):
        return refused(ErrorCode.inconsistent_group_protocol, request.member_id)
    member_id = request.member_id
    if not member_id:
        member_id = f"{conn.client_id or 'member'}-{uuid.uuid4()}"
        if request.__version__ >= 4:  # KIP-394: the client joins again with this id
            group.promised.add(member_id)
            return refused(ErrorCode.member_id_required, member_id)
    elif member_id not in group.members and member_id not in group.promised:
        return refused(ErrorCode.unknown_member_id, member_id)
    group.promised.discard(member_id)
    loop = asyncio.get_running_loop()
    session_s = _timeout_s(request.session_timeout, 10.0)
    member = Member(
        member_id=member_id,
        client_id=conn.client_id or "",
        client_host=conn.peer.rsplit(":", 1)[0],
        protocol_type=request.protocol_type,
        protocols=protocols,
        session_timeout_s=session_s,
        rebalance_timeout_s=_timeout_s(getattr(request, "rebalance_timeout", None), session_s),
        group_instance_id=getattr(request, "group_instance_id", None),
        seen=loop.time(),
    )
    known = group.members.get(member_id)
    if known is not None and known.joining is not None and not known.joining.done():
        known.joining.set_result({"error_code": ErrorCode.unknown_member_id})
    joining: asyncio.Future[dict[str, Any]] = loop.create_future()
    member.joining = joining
    if group.protocol_type is None:
        group.protocol_type = request.protocol_type
    group.members[member_id] = member
    coordinator.prepare(group, f"{member_id} joined")
    coordinator.try_complete(group)
    answer = await joining
    if answer["error_code"] is not ErrorCode.none:
        return refused(answer["error_code"], member_id)
    return respond(request, **answer)


def _member(door: Door, request: Any) -> tuple[Group | None, Member | None, ErrorCode]:
    """The group and member a request names, and the error if they cannot take it."""
    if _not_coordinator(door):
        return None, None, ErrorCode.not_coordinator
    group = door.coordinator.groups.get(request.group_id)
    member = group.members.get(request.member_id) if group is not None else None
    if group is None or member is None:
        return group, None, ErrorCode.unknown_member_id
    member.seen = asyncio.get_running_loop().time()
    if request.generation_id != group.generation:
        return group, member, ErrorCode.illegal_generation
    return group, member, ErrorCode.none


async def sync_group(door: Door, conn: Connection, request: Any) -> Any:
    group, member, code = _member(door, request)
    if group is not None and code is ErrorCode.none and group.state == PREPARING:
        code = ErrorCode.rebalance_in_progress
    if group is None or member is None or code is not ErrorCode.none:
        return respond(request, error_code=code, assignment=b"")
    assignment = member.assignment
    if group.state == COMPLETING:
        if member.member_id == group.leader:
            given = {a.member_id: bytes(a.assignment) for a in request.assignments}
            for each in group.members.values():
                each.assignment = given.get(each.member_id, b"")
            group.state = STABLE
            for each in group.members.values():
                if each.syncing is not None and not each.syncing.done():
                    each.syncing.set_result((ErrorCode.none, each.assignment))
            assignment = member.assignment
        else:
            syncing: asyncio.Future[tuple[ErrorCode, bytes]] = (
                asyncio.get_running_loop().create_future()
            )
            member.syncing = syncing
            code, assignment = await syncing
    return respond(
        request,
        error_code=code,
        protocol_type=group.protocol_type,
        protocol_name=group.protocol,
        assignment=assignment,
    )


async def heartbeat(door: Door, conn: Connection, request: Any) -> Any:
    group, _, code = _member(door, request)
    if group is not None and code is ErrorCode.none and group.state == PREPARING:
        code = ErrorCode.rebalance_in_progress
    return respond(request, error_code=code)


async def leave_group(door: Door, conn: Connection, request: Any) -> Any:
    if hasattr(request, "members"):
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    if _not_coordinator(door):
        return respond(request, error_code=ErrorCode.not_coordinator, members=[])
    group = door.coordinator.groups.get(request.group_id)
    answers = []
    for member_id, instance in leaving:
        known = group is not None and member_id in group.members
        if group is not None and known:
            door.coordinator.remove(group, member_id)
        code = ErrorCode.none if known else ErrorCode.unknown_member_id
        answers.append({"member_id": member_id, "group_instance_id": instance, "error_code": code})
    top = ErrorCode.none if len(leaving) > 1 or not answers else answers[0]["error_code"]
    return respond(request, error_code=top, members=answers)


async def list_groups(door: Door, conn: Connection, request: Any) -> Any:
    if _not_coordinator(door):
        return respond(request, error_code=ErrorCode.not_coordinator, groups=[])
    states = set(getattr(request, "states_filter", ()) or ())
    listed = {
        g.group_id: (g.protocol_type or "consumer", g.state)
        for g in door.coordinator.groups.values()
    }
    with contextlib.suppress(Exception):  # the store's groups only add Empty ones
        for group_id in await door.state.groups():
            listed.setdefault(group_id, ("consumer", EMPTY))
    return respond(
        request,
        error_code=ErrorCode.none,
        groups=[
            {"group_id": group_id, "protocol_type": kind, "group_state": state}
            for group_id, (kind, state) in sorted(listed.items())
            if not states or state in states
        ],
    )


async def describe_groups(door: Door, conn: Connection, request: Any) -> Any:
    described = []
    for group_id in request.groups:
        if _not_coordinator(door):
            described.append({"error_code": ErrorCode.not_coordinator, "group_id": group_id})
            continue
        group = door.coordinator.groups.get(group_id)
        if group is None:
            described.append(
                {"error_code": ErrorCode.none, "group_id": group_id, "group_state": "Dead"}
            )
            continue
        protocol = group.protocol if group.state in (COMPLETING, STABLE) else None
        described.append(
            {
                "error_code": ErrorCode.none,
                "group_id": group_id,
                "group_state": group.state,
                "protocol_type": group.protocol_type or "",
                "protocol_data": protocol or "",
                "members": [
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "member_metadata": m.metadata(protocol) if protocol else b"",
                        "member_assignment": m.assignment,
                    }
                    for m in group.members.values()
                ],
                "authorized_operations": -(2**31),
            }
        )
    return respond(request, groups=described)
