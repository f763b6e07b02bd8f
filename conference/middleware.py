"""One base for middleware that works around a request, for both sync and async views.

A subclass writes one generator, :meth:`AroundMiddleware.around`: what it does before ``yield`` runs before the
view (a ``with`` block around the ``yield`` spans the view), the ``yield`` receives the view's response and the
generator returns the response to send.  The base drives it from Django's sync or async call path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

Around = Generator[None, HttpResponseBase, HttpResponseBase]


class AroundMiddleware:
    """Runs :meth:`around` around the view, sync or async."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def around(self, request: HttpRequest) -> Around:
        """Before the view, ``response = yield``, after it; returns the answer (the default leaves it as is)."""
        return (yield)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        step = self.around(request)
        next(step)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return _finish(step, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        step = self.around(request)
        next(step)
        response = await self.get_response(request)  # type: ignore[misc]
        return _finish(step, response)


def _finish(step: Around, response: HttpResponseBase) -> HttpResponseBase:
    """Sends the view's response into the generator and returns what it returns."""
    try:
        step.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("AroundMiddleware.around must return after its one yield")
