"""The World Boss platform's SDK for game servers acting as shards (docs/sdk.md).

``pip install ./sdk`` gives this package alone: the asyncio client, the local buffer it
shares with the platform's hosted shards, the protocol's constants, the typed errors and
the reference signer of player tickets.
It depends on ``websockets`` only (no Django).
"""

from worldboss_sdk.buffer import BufferFull, Delta, LocalBuffer
from worldboss_sdk.client import ClientStats, ShardClient
from worldboss_sdk.errors import LiveOpsError
from worldboss_sdk.protocol import PROTOCOL_VERSION, CloseCode, ErrorCode
from worldboss_sdk.tickets import player_ticket_sign
from worldboss_sdk.webhooks import WebhookVerificationError, webhook_verify

__all__ = [
    "PROTOCOL_VERSION",
    "BufferFull",
    "ClientStats",
    "CloseCode",
    "Delta",
    "ErrorCode",
    "LiveOpsError",
    "LocalBuffer",
    "ShardClient",
    "WebhookVerificationError",
    "player_ticket_sign",
    "webhook_verify",
]
__version__ = "0.2.0"
