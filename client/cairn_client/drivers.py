"""Carrying out programs' steps (``steps.py``): blocking on an ``httpx.Client``, or awaiting
on an ``httpx.AsyncClient``. This is all that differs between the two clients' requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any, Final, Generic, TypeVar, assert_never

import httpx

from cairn_client.steps import (
    Chunk,
    Close,
    Emit,
    Open,
    Opened,
    Program,
    ReadAll,
    Send,
    Sleep,
    Step,
    Stream,
)

T = TypeVar("T")
EMITTED: Final = "a program that answers one value emitted"


class Machine(Generic[T]):
    """Steps one program: sends each step's outcome back into it, or throws the transport
    error that step met, until it returns (``result``)."""

    __slots__ = ("_failure", "_program", "_reply", "opened", "result")

    def __init__(self, program: Program[T] | Stream[Any]) -> None:
        self._program = program
        self._reply: Any = None
        self._failure: BaseException | None = None
        self.opened: list[Opened] = []
        """Streams the program opened and has not closed: closed when it ends, however."""
        self.result: Any = None

    def __iter__(self) -> Iterator[Step | Emit[Any]]:
        """The program's steps, one by one, each after the previous one's outcome was fed
        back (``reply`` or ``fail``), until it returns."""
        while True:
            reply, failure = self._reply, self._failure
            self._reply = self._failure = None
            try:
                if failure is not None:
                    yield self._program.throw(failure)
                else:
                    yield self._program.send(reply)
            except StopIteration as done:
                self.result = done.value
                return

    def reply(self, value: Any) -> None:
        self._reply = value

    def fail(self, error: BaseException) -> None:
        self._failure = error

    def opened_stream(self, response: httpx.Response, chunks: Any) -> Opened:
        self.opened.append(Opened(response, chunks))
        return self.opened[-1]

    def closed_stream(self, stream: Opened) -> None:
        self.opened.remove(stream)

    def leftovers(self) -> list[Opened]:
        self._program.close()
        left, self.opened = self.opened, []
        return left


class SyncDriver:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def run(self, program: Program[T]) -> T:
        machine: Machine[T] = Machine(program)
        for _ in self._drive(machine):
            raise AssertionError(EMITTED)
        result: T = machine.result
        return result

    def iterate(self, program: Stream[T]) -> Generator[T, None, None]:
        return self._drive(Machine(program))

    def _drive(self, machine: Machine[Any]) -> Generator[Any, None, None]:
        try:
            for step in machine:
                if isinstance(step, Emit):
                    yield step.item
                else:
                    self._carry_out(machine, step)
        finally:
            for stream in machine.leftovers():
                stream.response.close()

    def _carry_out(self, machine: Machine[Any], step: Step) -> None:
        try:
            machine.reply(self._io(machine, step))
        except httpx.TransportError as error:
            machine.fail(error)

    def _io(self, machine: Machine[Any], step: Step) -> Any:
        match step:
            case Send(request):
                return self.http.send(request)
            case Sleep(seconds):
                time.sleep(seconds)
            case Open(request):
                response = self.http.send(request, stream=True)
                return machine.opened_stream(response, response.iter_bytes())
            case Chunk(stream):
                return next(stream.chunks, b"")
            case ReadAll(stream):
                stream.response.read()
            case Close(stream):
                machine.closed_stream(stream)
                stream.response.close()
            case _:
                assert_never(step)
        return None


class AsyncDriver:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def run(self, program: Program[T]) -> T:
        machine: Machine[T] = Machine(program)
        async for _ in self._drive(machine):
            raise AssertionError(EMITTED)
        result: T = machine.result
        return result

    def iterate(self, program: Stream[T]) -> AsyncGenerator[T, None]:
        return self._drive(Machine(program))

    async def _drive(self, machine: Machine[Any]) -> AsyncGenerator[Any, None]:
        try:
            for step in machine:
                if isinstance(step, Emit):
                    yield step.item
                else:
                    await self._carry_out(machine, step)
        finally:
            for stream in machine.leftovers():
                await stream.response.aclose()

    async def _carry_out(self, machine: Machine[Any], step: Step) -> None:
        try:
            machine.reply(await self._io(machine, step))
        except httpx.TransportError as error:
            machine.fail(error)

    async def _io(self, machine: Machine[Any], step: Step) -> Any:
        match step:
            case Send(request):
                return await self.http.send(request)
            case Sleep(seconds):
                await asyncio.sleep(seconds)
            case Open(request):
                response = await self.http.send(request, stream=True)
                return machine.opened_stream(response, response.aiter_bytes())
            case Chunk(stream):
                return await anext(stream.chunks, b"")
            case ReadAll(stream):
                await stream.response.aread()
            case Close(stream):
                machine.closed_stream(stream)
                await stream.response.aclose()
            case _:
                assert_never(step)
        return None
