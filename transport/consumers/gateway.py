"""``/ws/shards/<shard>/``: the shard gateway (docs/protocol.md).

Two kinds of client share the endpoint:

* a **game server** authenticates with its shard token (``Authorization: Bearer <token>``
  header, or a first ``{"type": "auth", "token": ...}`` frame), gets a ``welcome`` with its
  epoch, then sends ``damage`` (acked with its seq; a re-sent seq is acked with
  ``duplicate: true`` and not applied twice) and ``heartbeat`` frames;
* a **platform-hosted player** is identified (docs/security.md, "Player identity") by a
  ticket its game's backend signed (``?ticket=<ticket>``: the ticket's ``sub``), else by the
  Django session (``user:<pk>``), else by the signed guest cookie the player page issued
  (``guest:<random>``, only for bosses that allow guests); ``?player=<id>`` is taken at its
  word only in simulator mode (``LIVEOPS_SIMULATOR_PLAYERS=1``). A ticket's socket is closed
  at the ticket's ``exp`` (``ticket_expired``, 4401). It sends ``attack {boss}``;
  the process's :class:`~bosses.hosted.HostedShard` computes the damage, rate-limits and
  buffers it; the ack carries the damage.

A shard has one kind (``Shard.kind``): players only on ``hosted`` shards, a game server's
token only on ``game_server`` shards; the other is refused with ``wrong_shard_kind`` (4403).

Every problem is an ``error`` frame with a code from core/errors.py (or worldboss_sdk/protocol.py)
and changes nothing; repeated abuse closes with a documented close code.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from bosses.hosted import hosted_shard_get
from bosses.sagas.crash import session_end
from core import messages, metrics
from core.errors import (
    AuthorityUnavailable,
    Forbidden,
    InvalidInput,
    LiveOpsError,
    MalformedFrame,
    RateLimited,
    TicketExpired,
    TicketInvalid,
    Unauthorized,
    UnknownBoss,
    UnknownEpoch,
    UnknownShard,
    UnknownType,
    WrongShardKind,
)
from core.redis import REDIS_DOWN
from core.tickets import player_ticket_verify
from core.validation import player_id
from core.wire import encode, error_frame, parse_frame
from shards.models import SHARD_KEY_RE, Shard, ShardKind, ShardStatus
from shards.services import (
    DATABASE_DOWN,
    adelta_ingest,
    aheartbeat_record,
    shard_auth_copy_exists,
    shard_authenticate,
    shard_session_open,
    shard_session_resume_from_copy,
)
from transport.consumers.base import DirectDispatchMixin, GuardedSocketMixin, SocketGaugeMixin
from transport.consumers.state import boss_ref_get
from transport.fastpath import text_frame, writer_for
from transport.permissions import guest_id_from_cookie, origin_problem
from worldboss_sdk.protocol import CloseCode

AUTH_TIMEOUT_S = 10.0  # a connection that is neither a player nor authenticated by then
MAX_BAD_FRAMES = 20  # malformed/invalid frames before CloseCode.MALFORMED
SERVER_FRAMES_PER_S = 500  # game server: one damage per boss per tick plus heartbeats
PLAYER_FRAMES_PER_S = 300  # player: 3 x the highest attacks_per_second a boss may have
# (100); the per-boss limit is enforced per attack, this only
# stops floods of frames
ABUSE_REFUSALS_PER_S = 2  # refused attacks per second, as a multiple of the boss's rate
_SHARD_KEY = re.compile(SHARD_KEY_RE)


def _shard_sync(shard_key: str) -> tuple[str, str]:
    """``(status, kind)`` of a shard, or :class:`UnknownShard`.

    With the database unreachable, a shard Redis holds a copy of is an online game server's
    (its token is checked against the copy next, :func:`_auth_sync`); any other shard
    answers :class:`AuthorityUnavailable` (try again).
    """
    try:
        row = Shard.objects.filter(key=shard_key).values_list("status", "kind").first()
    except DATABASE_DOWN as exc:
        if shard_auth_copy_exists(shard_key=shard_key):
            return ShardStatus.ONLINE, ShardKind.GAME_SERVER
        raise AuthorityUnavailable(f"the database is unreachable: {exc}") from exc
    if row is None:
        raise UnknownShard(f"unknown shard {shard_key!r}")
    return row


def _auth_sync(shard_key: str, token: str, resume) -> tuple[int, bool]:
    """Authenticate; resume epoch ``resume`` if it was handed out to this shard, else open one.

    Resuming lets an SDK that lost its socket re-send its in-flight seq under the same epoch
    (acked as a duplicate if it had landed): exactly-once across reconnects. A fenced epoch
    can be resumed, but every delta under it is then refused with ``fenced``. While the
    database is unreachable, a session resumes on the Redis copy of the shard's identity
    (shards.services.shard_session_resume_from_copy); a new one waits for the database.
    """
    if resume is not None and (isinstance(resume, bool) or not isinstance(resume, int) or resume < 1):
        raise InvalidInput(f"resume must be an epoch number, got {resume!r}", field="resume")
    try:
        shard = shard_authenticate(shard_key=shard_key, token=token)
    except DATABASE_DOWN:
        return shard_session_resume_from_copy(shard_key=shard_key, token=token, resume=resume), True
    if shard.kind != ShardKind.GAME_SERVER:
        # checked after the token: who does not hold it learns nothing about the shard
        raise WrongShardKind(
            f"shard {shard.key} is hosted by the platform: game servers cannot connect to it"
        )
    if resume is not None:
        if shard.status == ShardStatus.RETIRED:
            raise Unauthorized(f"shard {shard.key} is retired")
        if resume <= shard.current_epoch:
            return resume, True
    try:
        return shard_session_open(shard=shard).epoch, False
    except DATABASE_DOWN as exc:
        raise AuthorityUnavailable(f"the database is unreachable: {exc}") from exc


def _end_sync(shard_key: str, epoch: int, boss_ids: list[int], reason: str) -> dict[str, int]:
    """End a session the shard chose to end (``bye``: ``left``; a new ``auth``: ``replaced``).

    A crash saga fences it on every boss it has state on, with the reason recorded; the
    settlement follows the boss's policy, but the shard is not marked crashed. A client that
    flushed and heartbeated ``pending: 0`` first holds nothing, so nothing is settled.
    """
    try:
        return session_end(shard_key=shard_key, epoch=epoch, reason=reason, boss_ids=boss_ids)
    except REDIS_DOWN as exc:  # the client may say bye again; the crash scan covers it anyway
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    except DATABASE_DOWN as exc:  # the saga needs SQL: the same answer
        raise AuthorityUnavailable(f"the database is unreachable: {exc}") from exc


SQL_STATUS_RECHECK_S = 1.0
_sql_status_seen: dict[str, tuple[float, str]] = {}  # slug -> (when read, status in SQL)


async def _unless_being_restored(slug: str) -> None:
    """The authority has no such boss. If SQL runs the fight, Redis lost it and it is being
    restored from the archive (docs/durability.md): answer ``authority_unavailable`` (re-send
    the same frame later; nothing was applied) rather than ``unknown_boss``, which tells a
    client the boss is gone and its damage can be dropped."""
    now = time.monotonic()
    seen = _sql_status_seen.get(slug)
    if seen is None or now - seen[0] >= SQL_STATUS_RECHECK_S:
        # At most one database read per boss per second and process: every frame of a client
        # sending to a boss without an authority lands here (a draft one, or a lost one).
        seen = _sql_status_seen[slug] = (now, (await boss_ref_get(slug=slug, fresh=True)).status)
    if seen[1] != "draft":
        raise AuthorityUnavailable(f"the authority of {slug} is being restored; re-send the same frame")


def _bearer(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text.lower().startswith("bearer "):
                return text[7:].strip()
            return ""
    return None


_RESUME = re.compile(r"[0-9]{1,16}")  # ASCII digits only: str.isdigit() takes '²' too


def _resume_from_scope(scope) -> int | None:
    """``?resume=<epoch>``: absent or empty -> None; else 1-16 ASCII digits, or ``invalid``."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("resume")
    if not values:
        return None
    if not _RESUME.fullmatch(values[0]) or int(values[0]) < 1:
        raise InvalidInput("resume must be an epoch number (ASCII digits)", field="resume")
    return int(values[0])


def _query(scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


class PlayerSource:
    """How a player socket was identified (docs/security.md, "Player identity")."""

    TICKET = "ticket"
    SIMULATOR = "simulator"
    USER = "user"
    GUEST = "guest"


def _player_from_scope(scope, *, shard_key: str) -> tuple[str, str, str | None, int | None] | None:
    """``(player id, PlayerSource, boss slug the ticket is limited to, the ticket's exp)``, or
    None (no player). Only a ticket has an expiry (unix s): the socket is closed at it.

    Raises :class:`Unauthorized` (``?player=`` outside simulator mode), a ticket error, or
    :class:`InvalidInput` (a simulator id that is not a player id).
    """
    query = _query(scope)
    if "ticket" in query:
        if not settings.PLAYER_TICKET_KEYS:
            raise Unauthorized("this platform accepts no player tickets (PLAYER_TICKET_KEYS is not set)")
        ticket = player_ticket_verify(
            ticket=query["ticket"][0], keys=settings.PLAYER_TICKET_KEYS, now_s=time.time(), shard=shard_key
        )
        return ticket.player, PlayerSource.TICKET, ticket.boss, ticket.expires_at_s
    if "player" in query:
        if not settings.SIMULATOR_PLAYER_IDS:
            raise Unauthorized(
                "?player=<id> is accepted in simulator mode only (LIVEOPS_SIMULATOR_PLAYERS=1); "
                "connect with ?ticket=<a ticket your game signed>, signed in, or as a guest of the player page"
            )
        # the same rule as everywhere; a simulated player is never a platform id (user:, guest:, sim:)
        return player_id(query["player"][0], field="player"), PlayerSource.SIMULATOR, None, None
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}", PlayerSource.USER, None, None
    guest = guest_id_from_cookie((scope.get("cookies") or {}).get(settings.GUEST_COOKIE_NAME))
    return (guest, PlayerSource.GUEST, None, None) if guest else None


def _scalar(value):
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


class ShardGatewayConsumer(GuardedSocketMixin, SocketGaugeMixin, DirectDispatchMixin, AsyncWebsocketConsumer):
    """One game-server or player connection to a shard (see the module docstring)."""

    metrics_endpoint = "shard"
    shard_key = ""
    shard_kind = ""
    epoch: int | None = None
    player: str | None = None
    player_source: str | None = None  # PlayerSource
    ticket_boss: str | None = None  # the boss slug a ticket is limited to
    ticket_expires_s: int | None = None  # the ticket's exp (unix s): the socket closes then
    _auth_timer: asyncio.Task | None = None
    _ticket_timer: asyncio.Task | None = None
    _touched: dict[int, str] | None = None  # boss id -> slug this session sent damage/heartbeats to

    _raw = None

    async def send_text(self, text: str) -> None:
        """Send one frame: straight to the transport when the uvicorn fast path allows it
        (transport/fastpath.py; acks are the hot path: this skips the session middleware's
        send wrapper and per-frame re-encoding)."""
        if self._raw is not None and self._raw(text_frame(text)):
            return
        await self.send(text_data=text)

    async def connect(self) -> None:
        await self.accept()
        self._raw = writer_for(self.base_send)
        self.shard_key = self.scope["url_route"]["kwargs"].get("shard", "")
        self._window, self._frames, self._bad, self._refused = time.monotonic(), 0, 0, 0
        try:
            if not _SHARD_KEY.fullmatch(self.shard_key):
                raise UnknownShard(f"unknown shard {self.shard_key[:64]!r}")
            status, self.shard_kind = await database_sync_to_async(_shard_sync)(self.shard_key)
        except UnknownShard as err:
            return await self._close_with(err, CloseCode.UNKNOWN_BOSS)
        except AuthorityUnavailable as err:
            return await self._close_with(err, CloseCode.TRY_AGAIN)
        token = _bearer(self.scope)
        if token is not None:
            return await self._connect_game_server(token)
        if self.shard_kind != ShardKind.HOSTED:
            return await self._await_auth_frame()
        await self._connect_player(status)

    async def _connect_game_server(self, token: str) -> None:
        """A game server that sent its token in the Authorization header (and maybe ?resume=)."""
        try:
            resume = _resume_from_scope(self.scope)
        except InvalidInput as err:
            return await self._close_with(err, CloseCode.MALFORMED)
        await self._authenticate(token, resume)

    async def _await_auth_frame(self) -> None:
        """A game server's shard without an Authorization header: its auth frame follows.

        Players cannot connect to it, and the cookies a browser may carry identify no one here.
        """
        query = _query(self.scope)
        if "player" in query or "ticket" in query:
            return await self._close_with(
                WrongShardKind(
                    f"shard {self.shard_key} belongs to a game server: players cannot connect to it"
                ),
                CloseCode.FORBIDDEN,
            )
        self._auth_timer = asyncio.get_running_loop().create_task(self._auth_deadline())

    async def _connect_player(self, status: str) -> None:
        """A player on a hosted shard: identified by a ticket, a session or a guest cookie."""
        try:
            identity = _player_from_scope(self.scope, shard_key=self.shard_key)
        except InvalidInput as err:
            return await self._close_with(err, CloseCode.MALFORMED)
        except Unauthorized as err:  # ticket errors too
            return await self._close_with(err, CloseCode.UNAUTHORIZED)
        if identity is None:
            return await self._close_with(
                Unauthorized(
                    "players need an identity: ?ticket=<a ticket your game signed>, a signed-in "
                    "session, or the guest cookie of the player page (for bosses that allow guests)"
                ),
                CloseCode.UNAUTHORIZED,
            )
        self.player, self.player_source, self.ticket_boss, self.ticket_expires_s = identity
        # identified by a cookie (session or guest): only pages of this site may use it
        cookie_player = self.player_source in (PlayerSource.USER, PlayerSource.GUEST)
        if cookie_player and (problem := origin_problem(self.scope)):
            self.player = None
            return await self._close_with(Forbidden(problem), CloseCode.FORBIDDEN)
        if self.player is None:
            return
        if status == "retired":
            return await self._close_with(
                Unauthorized(f"shard {self.shard_key} is retired"), CloseCode.FORBIDDEN
            )
        await self.send_text(encode(messages.player_welcome_frame(shard=self.shard_key, player=self.player)))
        if self.ticket_expires_s is not None:
            self._ticket_timer = asyncio.get_running_loop().create_task(self._ticket_deadline())

    async def disconnect(self, code: int) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if self._ticket_timer is not None:
            self._ticket_timer.cancel()
        if self.player is not None:
            # A graceful shutdown closes every socket first: flush what this process's hosted
            # shard holds so acked attacks are not left to the crash saga.
            try:
                await hosted_shard_get(shard_key=self.shard_key).flush_now()
            except Exception:
                pass

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_S)
        if self.epoch is None and self.player is None:
            await self._close_with(
                Unauthorized(f"no auth frame within {AUTH_TIMEOUT_S:g} s"), CloseCode.UNAUTHORIZED
            )

    async def _ticket_deadline(self) -> None:
        """A ticket vouches for its player until its ``exp``, on an open socket too."""
        assert self.ticket_expires_s is not None
        # the loop timer runs on the monotonic clock and may wake a hair before exp by the wall
        # clock: sleep again until the wall clock has reached it
        await asyncio.sleep(max(0.0, self.ticket_expires_s - time.time()))
        await asyncio.sleep(max(0.0, self.ticket_expires_s - time.time()))  # at most a hair more
        await self._ticket_expired_close()

    def _ticket_expired(self) -> bool:
        return self.ticket_expires_s is not None and time.time() >= self.ticket_expires_s

    async def _ticket_expired_close(self) -> None:
        """The error frame ``ticket_expired``, then close 4401 with the reason ``ticket_expired``:
        the game's client reconnects with a fresh ticket (docs/security.md, "Tickets")."""
        self.ticket_expires_s = None  # closed once, by the timer or by an attack
        err = TicketExpired("the ticket has expired on this connection: reconnect with a fresh one")
        await self.send_text(error_frame(err, close=CloseCode.UNAUTHORIZED))
        await self.close(code=CloseCode.UNAUTHORIZED, reason=err.code)

    async def _close_with(self, err: LiveOpsError, code: int) -> None:
        await self.send_text(error_frame(err, close=code))
        await self.close(code=code)

    async def _authenticate(self, token, resume=None) -> None:
        if not isinstance(token, str) or not token:
            return await self._close_with(
                Unauthorized("a non-empty token is required"), CloseCode.UNAUTHORIZED
            )
        previous = self.epoch
        try:
            self.epoch, resumed = await database_sync_to_async(_auth_sync)(self.shard_key, token, resume)
        except WrongShardKind as err:
            return await self._close_with(err, CloseCode.FORBIDDEN)
        except Unauthorized as err:
            retired = "retired" in err.detail
            return await self._close_with(err, CloseCode.FORBIDDEN if retired else CloseCode.UNAUTHORIZED)
        except InvalidInput as err:
            return await self._close_with(err, CloseCode.MALFORMED)
        except LiveOpsError as err:  # authority unavailable: the client retries
            return await self._close_with(err, CloseCode.TRY_AGAIN)
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if previous is not None and previous != self.epoch:
            # A new auth on this socket starts another session and ends the previous one: fence
            # it now (reason 'replaced') instead of leaving it to be declared crashed later.
            try:
                await database_sync_to_async(_end_sync)(
                    self.shard_key, previous, list(self._touched or {}), "replaced"
                )
            except LiveOpsError:
                pass  # the authority is away: the crash scan fences it once it is silent
        self._touched = None
        await self.send_text(
            encode(messages.server_welcome_frame(shard=self.shard_key, epoch=self.epoch, resumed=resumed))
        )

    # --- frames ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._frames, self._refused = now, 0, 0
        self._frames += 1
        limit = SERVER_FRAMES_PER_S if self.epoch is not None else PLAYER_FRAMES_PER_S
        if self._frames > limit:
            return await self._close_with(
                RateLimited(f"more than {limit} frames per second"), CloseCode.RATE_LIMITED
            )
        frame: dict = {}
        try:
            frame = parse_frame(text_data, bytes_data)
            handler = getattr(self, f"on_{frame['type']}", None) if frame["type"] in HANDLED else None
            if handler is None:
                raise UnknownType(f"unknown frame type {frame['type'][:40]!r}", field="type")
            await handler(frame)
        except LiveOpsError as err:
            await self._refuse(err, frame)

    async def _refuse(self, err: LiveOpsError, frame: dict) -> None:
        if frame.get("type") == "attack":
            metrics.HOSTED_ATTACKS.labels(outcome=err.code).inc()
        if err.code == "too_large":
            return await self._close_with(err, CloseCode.TOO_LARGE)
        await self.send_text(
            error_frame(
                err,
                ref=_scalar(frame.get("type")),
                boss=_scalar(frame.get("boss")),
                seq=_scalar(frame.get("seq")),
                id=_scalar(frame.get("id")),
            )
        )
        if err.code == "unauthorized" and self.epoch is None and self.player is None:
            return await self.close(code=CloseCode.UNAUTHORIZED)
        if err.code in ("rate_limited",):
            return
        if isinstance(err, (InvalidInput, UnknownBoss, UnknownType)):
            self._bad += 1
            if self._bad >= MAX_BAD_FRAMES:
                await self.close(code=CloseCode.MALFORMED)

    async def on_ping(self, frame: dict) -> None:
        await self.send_text(encode(messages.pong_frame(id=_scalar(frame.get("id")), echo_id=True)))

    async def on_auth(self, frame: dict) -> None:
        """First frame of a game server without an Authorization header (also re-auth)."""
        await self._authenticate(frame.get("token"), frame.get("resume"))

    def _server(self) -> int:
        if self.epoch is None:
            raise Unauthorized("authenticate first: Authorization header or an auth frame")
        return self.epoch

    async def _boss(self, frame: dict):
        slug = frame.get("boss")
        if not isinstance(slug, str):
            raise MalformedFrame("'boss' must be the boss's slug (a string)", field="boss")
        return await boss_ref_get(slug=slug)

    async def on_damage(self, frame: dict) -> None:
        """``damage {boss, amount, seq, breakdown?, epoch?}`` -> ``ack {boss, seq, duplicate}``."""
        epoch = self._server()
        if "epoch" in frame and frame["epoch"] != epoch:
            raise UnknownEpoch(
                f"epoch {frame['epoch']!r} is not this connection's epoch {epoch}", epoch=epoch
            )
        boss = await self._boss(frame)
        try:
            result = await adelta_ingest(
                boss_id=boss.id,
                shard_key=self.shard_key,
                epoch=epoch,
                seq=frame.get("seq"),
                amount=frame.get("amount"),
                breakdown=frame.get("breakdown"),
            )
        except UnknownBoss:
            await _unless_being_restored(boss.slug)
            raise
        self._touch(boss)
        if not result.duplicate:
            metrics.DAMAGE_ACCEPTED.labels(boss=boss.slug).inc(int(frame["amount"]))
        await self.send_text(
            encode(messages.ack_frame(boss=boss.slug, seq=result.seq, duplicate=result.duplicate))
        )

    async def on_heartbeat(self, frame: dict) -> None:
        """``heartbeat {boss, pending, inflight?: {seq, amount, breakdown?}, breakdown?, sent?}`` -> ``heartbeat_ack``."""
        epoch = self._server()
        boss = await self._boss(frame)
        inflight = frame.get("inflight") or {}
        if not isinstance(inflight, dict):
            raise MalformedFrame("'inflight' must be an object {seq, amount}", field="inflight")
        try:
            result = await aheartbeat_record(
                boss_id=boss.id,
                shard_key=self.shard_key,
                epoch=epoch,
                pending=frame.get("pending"),
                inflight_seq=inflight.get("seq", 0),
                inflight_amount=inflight.get("amount", 0),
                breakdown=frame.get("breakdown"),
                inflight_breakdown=inflight.get("breakdown"),
                sent=frame.get("sent"),
            )
        except UnknownBoss:
            await _unless_being_restored(boss.slug)
            raise
        self._touch(boss)
        await self.send_text(
            encode(
                messages.heartbeat_ack_frame(
                    boss=boss.slug, last_seq=result.last_seq, held=result.held, durable_seq=result.durable_seq
                )
            )
        )

    def _touch(self, boss) -> None:
        if self._touched is None:
            self._touched = {}
        self._touched[boss.id] = boss.slug

    async def on_bye(self, frame: dict) -> None:
        """``bye`` (game server leaving cleanly) -> ``bye_ack {settled}``, then close 1000.

        The session is retired on every boss it touched (so it is not later declared crashed,
        and anything it still sends is fenced); flush and heartbeat ``pending: 0`` first.
        """
        epoch = self._server()
        settled = await database_sync_to_async(_end_sync)(
            self.shard_key, epoch, list(self._touched or {}), "left"
        )
        await self.send_text(encode(messages.bye_ack_frame(epoch=epoch, settled=settled)))
        await self.close(code=1000)

    async def on_attack(self, frame: dict) -> None:
        """``attack {boss, id?}`` (players) -> ``attack_ack {boss, damage, id}``."""
        if self.player is None:
            raise Unauthorized(
                "attacks need a player: connect with ?ticket=<ticket>, a session or a guest cookie"
            )
        if self._ticket_expired():  # the timer is due: never an attack past the ticket's exp
            return await self._ticket_expired_close()
        boss = await self._boss(frame)
        if self.ticket_boss is not None and boss.slug != self.ticket_boss:
            raise TicketInvalid(f"this connection's ticket is for the boss {self.ticket_boss!r} only")
        # boss_ref_get's cache: a boss that stops admitting guests refuses them within BOSS_CACHE_TTL_S
        if self.player_source == PlayerSource.GUEST and not boss.allow_guests:
            raise Forbidden(f"{boss.name} does not admit guests: sign in to fight it")
        try:
            damage, _ = await hosted_shard_get(shard_key=self.shard_key).attack(boss=boss, player=self.player)
        except RateLimited:
            self._refused += 1
            if self._refused > ABUSE_REFUSALS_PER_S * boss.attacks_per_second:
                await self._close_with(
                    RateLimited("repeated attacks past the rate limit"), CloseCode.RATE_LIMITED
                )
                return
            raise
        metrics.HOSTED_ATTACKS.labels(outcome="accepted").inc()
        await self.send_text(
            encode(messages.attack_ack_frame(boss=boss.slug, damage=damage, id=_scalar(frame.get("id"))))
        )


HANDLED = frozenset({"ping", "auth", "damage", "heartbeat", "attack", "bye"})
