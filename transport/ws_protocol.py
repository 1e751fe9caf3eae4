"""uvicorn's websockets-sansio protocol, answering a WebSocket handshake that websockets refused.

websockets refuses a request line over 8 KiB (a 100 KB ``?ticket=``) with 414 and request
headers that are too large with 431: it prepares the response and logs "HTTP response sent",
but uvicorn's sansio protocol only writes what websockets prepared when a request or a
parser error comes out of it, which neither of these produces. The response was never sent
and the connection stayed open with no deadline: the handshake timeout ended with the
request head (transport/handshake.py) and the application is never called, so no socket cap
counted it either. :class:`AnsweringWebSocketsSansIOProtocol` sends the prepared response
and closes (docs/security.md, "Bounds").
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class AnsweringWebSocketsSansIOProtocol(WebSocketsSansIOProtocol):
    """Sends websockets' own refusal of a handshake it could not parse, then closes."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.handshake_initiated or self.conn.handshake_exc is None or self.transport.is_closing():
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
