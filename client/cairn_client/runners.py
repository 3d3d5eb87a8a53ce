"""One surface for both clients: each operation is written once, as a program
(``steps.py``), and these descriptors turn it into a blocking method on what runs programs
synchronously (``Client``, ``Delivery``) and into a coroutine method on what runs them on
asyncio (``AsyncClient``, ``AsyncDelivery``). The overloads of ``__get__`` give each side its
own precise type, so ``Client.publish`` is ``(...) -> Published`` and ``AsyncClient.publish``
is ``(...) -> Coroutine[..., Published]``, checked by mypy like handwritten methods.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from cairn_client.steps import Program, Stream

P = ParamSpec("P")
T = TypeVar("T")


class SyncRunner:
    """Runs programs by blocking."""

    __slots__ = ()

    def _run(self, program: Program[T]) -> T:
        raise NotImplementedError

    def _iterate(self, program: Stream[T]) -> Generator[T, None, None]:
        raise NotImplementedError


class AsyncRunner:
    """Runs programs on asyncio."""

    __slots__ = ()

    async def _run(self, program: Program[T]) -> T:
        raise NotImplementedError

    def _iterate(self, program: Stream[T]) -> AsyncGenerator[T, None]:
        raise NotImplementedError


class _Descriptor:
    def __init__(self, build: Callable[..., Any]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self.__wrapped__ = build  # so inspect.signature() and help() show the parameters
        self.__name__ = build.__name__

    def _bind(self, instance: Any, run: Callable[[Any], Any]) -> Callable[..., Any]:
        build = self._build

        def bound(*args: Any, **kwargs: Any) -> Any:
            return run(build(instance, *args, **kwargs))

        # A client keeps its bound methods (the next lookup is a dict hit) and gives them the
        # operation's name and docstring; a delivery (a Struct: no __dict__) is used once.
        if hasattr(instance, "__dict__"):
            instance.__dict__[self.__name__] = functools.wraps(build)(bound)
        return bound


class operation(_Descriptor, Generic[P, T]):  # lower case: a decorator, like property
    """A method that answers one value: ``T`` on a sync runner, awaitable on an async one."""

    def __init__(self, build: Callable[Concatenate[Any, P], Program[T]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: SyncRunner, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, instance: AsyncRunner, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        return self if instance is None else self._bind(instance, instance._run)


class streaming(_Descriptor, Generic[P, T]):  # lower case: a decorator
    """A method that hands out values one by one: a generator on a sync runner, an async
    generator on an async one (``close()``/``aclose()`` end it at once)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Stream[T]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, instance: SyncRunner, owner: type[Any]
    ) -> Callable[P, Generator[T, None, None]]: ...
    @overload
    def __get__(
        self, instance: AsyncRunner, owner: type[Any]
    ) -> Callable[P, AsyncGenerator[T, None]]: ...
    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        return self if instance is None else self._bind(instance, instance._iterate)
