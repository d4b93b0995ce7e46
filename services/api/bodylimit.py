"""A maximum request body size, enforced before anything parses the body.

A declared Content-Length beyond the limit is answered 413 at once, without reading the body; a body
without one (chunked) is counted as it streams in and refused as soon as it passes the limit, so no
handler ever holds more than the limit (a 7.5 MB list of sources held the event loop for 10 s).
FastAPI's own `max_body_size` answers a declared excess in plain text whatever the app answers; this
one answers with the API's Problem, like every other error.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import problems


class BodyLimit:
    """ASGI middleware: 413 (a Problem that says the limit) for a request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.detail = f"the request body is larger than {max_bytes} bytes, the most this API reads"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit():
            await problems.answer(400, "Content-Length is not a number of bytes")(scope, receive, send)
            return
        if int(declared) > self.max_bytes:
            await problems.answer(413, self.detail)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # raised inside the handler's read: FastAPI answers it as a Problem
                raise problems.TooLarge(self.detail)
            return message

        await self.app(scope, counted, send)
