"""uvicorn's httptools protocol with a deadline for request headers (uvicorn has none).

Without it, a client that opens a connection and sends half a header (or one byte every few seconds) holds that
connection and its buffers for as long as it likes: uvicorn's keep-alive timer only runs between requests and
is cancelled by any byte received. Here:
- a new connection is idle until its first byte, so it gets uvicorn's keep-alive timeout, as between requests;
- once bytes arrive while no request is in flight, the header must be complete within SERVE_HEADER_TIMEOUT_SECONDS;
  otherwise the client gets a 408 and the connection is closed;
- the body's deadline is the app's (SERVE_BODY_TIMEOUT_SECONDS, a 408 too).
`serve` installs it with uvicorn's `http=` option ("ml_pipeline.serving.protocol:HeaderTimeoutProtocol").
"""

from __future__ import annotations

import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ml_pipeline.serving import timeouts

_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                   b"content-length: %d\r\n\r\n%s")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout = timeouts.seconds(os.environ, timeouts.HEADER_VARIABLE)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # Idle until the first byte, like a keep-alive connection between requests.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc) -> None:
        self._stop_header_timer()
        self._unset_keepalive_if_required()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            # A new request starts (or stray bytes after the last answer): its header is now on the clock.
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self._header_timer is None:  # a pipelined request behind one in flight
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request is still being answered: finish it, then close instead of waiting further.
            self.cycle.keep_alive = False
            return
        body = b'{"error":"the request header did not arrive within %g s"}' % self.header_timeout
        self.transport.write(_TIMEOUT_ANSWER % (len(body), body))
        self.transport.close()
