// The game-server client: one game server's connection to the platform as a shard.
//
//     var client = new ShardClient("ws://platform:8000", new ShardClientOptions { Shard = "eu-1", Token = token });
//     client.Start();                          // returns at once; connects in the background
//     client.Hit("ragnaros", 120, "alice");    // in the game loop: O(1), no I/O, never waits
//     client.Dispatch();                       // in Update(): raises queued events on this thread
//     client.Stop();                           // flush (bounded), then `bye`
//
// The same semantics as the Python SDK (sdk/worldboss_sdk/client.py, docs/sdk.md): one delta
// per boss per tick, the same seq re-sent until acknowledged, heartbeats with what it holds and
// who holds it, reconnects that resume the epoch, fences settled exactly (`settled` dropped,
// then a new epoch), acknowledged deltas kept until `durable_seq` and re-sent under their own
// seqs after a rollback, and `bye` on a clean stop. Held to the conformance kit (conformance/).
//
// Threads: a connection thread (connect, receive) and a tick thread (deltas, heartbeats) run
// in the background; every state change happens under one lock, so Hit is safe from any
// thread. Events are queued and raised only by Dispatch(), on the thread that calls it (Unity's
// main thread: call it from a MonoBehaviour's Update).
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Threading;

namespace WorldBoss
{
    public sealed class ShardClientOptions
    {
        public string Shard;
        public string Token;
        public int TickMs = 100;
        public int HeartbeatMs = 1000;
        /// <summary>How long before an unacknowledged delta is sent again (default: TickMs).</summary>
        public int? ResendMs;
        public long MaxPending = Protocol.MaxDeltaAmount;
        public int MaxPlayers = LocalBuffer.DefaultMaxPlayers;
        public int OpenTimeoutMs = 5000;
        /// <summary>Liveness: a `ping` frame this often (0: none; liveness is then TCP's)...</summary>
        public int PingIntervalMs = ShardClient.PingIntervalMs;
        /// <summary>...and a link that sends nothing within this after a ping is dead and is left.</summary>
        public int PingTimeoutMs = ShardClient.PingTimeoutMs;
        /// <summary>Events waiting for Dispatch() past this are dropped (counted in DroppedEvents).</summary>
        public int MaxQueuedEvents = 10000;
    }

    /// <summary>Counters for logs and tests (the Python SDK's ClientStats).</summary>
    public sealed class ClientStats
    {
        public long Sent; // damage frames sent (re-sends included)
        public long Resent; // of which re-sends of a seq already sent
        public long Acked; // damage acknowledged (amount)
        public long Duplicates; // acks flagged duplicate
        public long Fences;
        public long Connects;
        public long UnansweredCloses; // closes this client started that the platform never answered
        public long DeadLinks; // links left because nothing came back within the ping timeout
        public readonly Dictionary<string, long> Errors = new Dictionary<string, long>();

        public ClientStats Copy()
        {
            var copy = new ClientStats { Sent = Sent, Resent = Resent, Acked = Acked, Duplicates = Duplicates, Fences = Fences, Connects = Connects, UnansweredCloses = UnansweredCloses, DeadLinks = DeadLinks };
            foreach (var kv in Errors) copy.Errors[kv.Key] = kv.Value;
            return copy;
        }
    }

    /// <summary>What the client holds for one boss (a copy, for logs and tests).</summary>
    public struct BossHolding
    {
        public string Boss;
        public long Unacked;
        public long Dropped;
        public long Replayed;
        public int Kept;
        public bool Ended;
    }

    public sealed class ShardClient : IDisposable
    {
        public static readonly int[] ReconnectBackoffMs = { 50, 100, 250, 500, 1000, 2000 };
        // Liveness of the shard socket (as the Python SDK): a ping every second; a link that
        // sends nothing for a second after it is dead and is left at once, well inside the
        // platform's heartbeat timeout (5 s by default), instead of TCP's retransmission
        // back-off. A close the platform does not answer within a second is given up.
        public const int PingIntervalMs = 1000;
        public const int PingTimeoutMs = 1000;
        public const int CloseTimeoutMs = 1000;

        private sealed class BossEntry
        {
            public readonly LocalBuffer Buffer;
            public long SentAt; // clock ms the in-flight seq was last sent (0: never / at once)
            public bool Ended;
            public long LastHeartbeat;
            public JsonObject State; // the newest `state` frame (needs Watch)
            public long Version = -1;

            public BossEntry(long maxPending, int maxPlayers, bool keeps)
            {
                Buffer = new LocalBuffer(maxPending, maxPlayers);
                Buffer.Keeps = keeps;
            }
        }

        public readonly string Url;
        public readonly string Shard;
        public readonly int TickMs;
        public readonly int HeartbeatMs;
        public readonly int ResendMs;
        public readonly long MaxPending;
        public readonly int MaxPlayers;
        public readonly int OpenTimeoutMs;
        public readonly int PingEveryMs;
        public readonly int PingWaitMs;

        private readonly string _token;
        private readonly int _maxQueuedEvents;
        private readonly object _gate = new object();
        private readonly object _sendGate = new object();
        private readonly Dictionary<string, BossEntry> _bosses = new Dictionary<string, BossEntry>();
        private readonly ClientStats _stats = new ClientStats();
        private readonly ConcurrentQueue<Action> _events = new ConcurrentQueue<Action>();
        private readonly ManualResetEvent _wake = new ManualResetEvent(false);
        private readonly CancellationTokenSource _life = new CancellationTokenSource();
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly Random _random = new Random();
        private volatile ClientWebSocket _ws;
        private readonly Dictionary<string, Thread> _watchers = new Dictionary<string, Thread>();
        private Thread _connThread;
        private Thread _tickThread;
        private long? _epoch;
        private volatile bool _connected;
        private bool _rotate; // fenced: switch to a new epoch once nothing is in flight
        private HashSet<string> _releasing; // bosses whose old session must be told "holds 0"
        private volatile bool _stopping;
        private volatile string _fatal;
        private bool _keeps; // the platform reports durable_seq (its welcome said so)
        private ManualResetEventSlim _byeWait;
        private JsonObject _lastError;
        private JsonObject _left;
        private long _droppedEvents;
        private long _lastReceived; // clock ms of the last frame from the platform
        private long _pingSentAt; // clock ms of the unanswered ping (0: none)
        private long _lastPing;
        private long _pingId;

        /// <summary>Welcomed under this epoch (raised by Dispatch).</summary>
        public event Action<long> Connected;
        /// <summary>The shard socket closed or was lost; the client reconnects on its own.</summary>
        public event Action Disconnected;
        /// <summary>A boss's delta was acknowledged: boss, seq, amount.</summary>
        public event Action<string, long, long> Acknowledged;
        /// <summary>The platform fenced this session for a boss: boss, settled (dropped here).</summary>
        public event Action<string, long> Fenced;
        /// <summary>An error frame (docs/protocol.md: code, detail and its extras).</summary>
        public event Action<JsonObject> ErrorReceived;
        /// <summary>The bye_ack of a clean stop.</summary>
        public event Action<JsonObject> Left;
        /// <summary>A newer `state` of a watched boss: boss, the frame (hp, max_hp, version, status, phase, ...).</summary>
        public event Action<string, JsonObject> StateChanged;

        public ShardClient(string url, ShardClientOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (string.IsNullOrEmpty(options.Shard)) throw new ArgumentException("options.Shard is required");
            if (string.IsNullOrEmpty(options.Token)) throw new ArgumentException("options.Token is required");
            Url = url.TrimEnd('/');
            Shard = options.Shard;
            _token = options.Token;
            TickMs = options.TickMs;
            HeartbeatMs = options.HeartbeatMs;
            ResendMs = options.ResendMs ?? options.TickMs;
            MaxPending = options.MaxPending;
            MaxPlayers = options.MaxPlayers;
            OpenTimeoutMs = options.OpenTimeoutMs;
            PingEveryMs = options.PingIntervalMs;
            PingWaitMs = options.PingTimeoutMs;
            _maxQueuedEvents = options.MaxQueuedEvents;
        }

        // --- the game's side: O(1), no I/O ------------------------------------------------

        /// <summary>Add one hit to a boss's buffer. ArgumentException (bad amount or player id)
        /// or BufferFullException (the buffer is at its bound).</summary>
        public void Hit(string boss, long amount, string player = null)
        {
            if (amount < 1) throw new ArgumentOutOfRangeException("amount", "amount must be a whole number >= 1, got " + amount);
            if (player != null) PlayerIdCheck(player);
            lock (_gate)
            {
                BossEntry b = Boss(boss);
                if (b.Ended) return; // the fight is over: there is nothing left to damage
                b.Buffer.Add(amount, player);
            }
        }

        /// <summary>ArgumentException unless the platform accepts this player id in a breakdown.</summary>
        public static void PlayerIdCheck(string player)
        {
            if (player == null || !Protocol.PlayerId.IsMatch(player) || player.IndexOf('\n') >= 0)
                throw new ArgumentException("player must be 1-64 letters, digits and _.:@-, got " + (player ?? "null"));
            foreach (string prefix in Protocol.ReservedPlayerPrefixes)
                if (player.StartsWith(prefix, StringComparison.Ordinal)) throw new ArgumentException("player " + player + " is a platform id");
        }

        /// <summary>This shard's damage to a boss not acknowledged yet.</summary>
        public long Unacked(string boss)
        {
            lock (_gate)
            {
                BossEntry b;
                return _bosses.TryGetValue(boss, out b) ? b.Buffer.Unacked : 0;
            }
        }

        /// <summary>The newest `state` frame seen for a boss (needs Watch), or null.</summary>
        public JsonObject State(string boss)
        {
            lock (_gate)
            {
                BossEntry b;
                return _bosses.TryGetValue(boss, out b) ? b.State : null;
            }
        }

        /// <summary>Truth minus this shard's unacknowledged damage (null before the first state).</summary>
        public long? PredictedHp(string boss)
        {
            lock (_gate)
            {
                BossEntry b;
                if (!_bosses.TryGetValue(boss, out b) || b.State == null) return null;
                return Math.Max(0, b.State.GetLong("hp") - b.Buffer.Unacked);
            }
        }

        public long? Epoch { get { lock (_gate) return _epoch; } }
        public bool IsConnected { get { return _connected; } }
        public ClientStats Stats { get { lock (_gate) return _stats.Copy(); } }
        public JsonObject LastError { get { lock (_gate) return _lastError; } }
        /// <summary>The bye_ack of a clean stop (null before, or when none came).</summary>
        public JsonObject LeftFrame { get { lock (_gate) return _left; } }
        public long DroppedEvents { get { return Interlocked.Read(ref _droppedEvents); } }
        /// <summary>Why the client stopped reconnecting for good (a refused token, a permanent close), or null.</summary>
        public string Fatal { get { return _fatal; } }

        public List<BossHolding> Holdings()
        {
            var list = new List<BossHolding>();
            lock (_gate)
            {
                foreach (var kv in _bosses)
                {
                    var buf = kv.Value.Buffer;
                    list.Add(new BossHolding { Boss = kv.Key, Unacked = buf.Unacked, Dropped = buf.Dropped, Replayed = buf.Replayed, Kept = buf.Kept.Count, Ended = kv.Value.Ended });
                }
            }
            return list;
        }

        private BossEntry Boss(string slug)
        {
            BossEntry b;
            if (!_bosses.TryGetValue(slug, out b))
            {
                b = new BossEntry(MaxPending, MaxPlayers, _keeps);
                _bosses[slug] = b;
            }
            return b;
        }

        // --- main-thread dispatch ---------------------------------------------------------

        /// <summary>Raise the queued events on the calling thread (Unity: from Update); how many.</summary>
        public int Dispatch(int max = int.MaxValue)
        {
            int done = 0;
            Action action;
            while (done < max && _events.TryDequeue(out action))
            {
                action();
                done++;
            }
            return done;
        }

        /// <summary>The same as Dispatch(), under the name of Unity's callback.</summary>
        public void Update()
        {
            Dispatch();
        }

        private void Raise(Delegate handler, Action call)
        {
            if (handler == null) return; // nobody listens: nothing to queue
            if (_events.Count >= _maxQueuedEvents)
            {
                Interlocked.Increment(ref _droppedEvents);
                return;
            }
            _events.Enqueue(call);
        }

        // --- lifecycle --------------------------------------------------------------------

        /// <summary>Start connecting and ticking (returns at once; never waits for the platform).</summary>
        public void Start()
        {
            if (_connThread != null) throw new InvalidOperationException("already started");
            _connThread = new Thread(ConnectionLoop) { IsBackground = true, Name = "worldboss-connection" };
            _tickThread = new Thread(TickLoop) { IsBackground = true, Name = "worldboss-tick" };
            _connThread.Start();
            _tickThread.Start();
        }

        /// <summary>Wait until welcomed (true) or the timeout passed (false). Not for Unity's main thread.</summary>
        public bool WaitConnected(int timeoutMs = 10000)
        {
            return WaitFor(() => _connected, timeoutMs);
        }

        /// <summary>Wait until nothing is held for any live boss (true) or the timeout passed (false).</summary>
        public bool Flush(int timeoutMs = 10000)
        {
            return WaitFor(NothingHeld, timeoutMs);
        }

        private bool NothingHeld()
        {
            lock (_gate)
            {
                foreach (var b in _bosses.Values)
                    if (b.Buffer.Unacked != 0 && !b.Ended) return false;
                return true;
            }
        }

        private bool WaitFor(Func<bool> condition, int timeoutMs)
        {
            long deadline = _clock.ElapsedMilliseconds + timeoutMs;
            while (!condition())
            {
                if (_clock.ElapsedMilliseconds > deadline) return false;
                Thread.Sleep(5);
            }
            return true;
        }

        /// <summary>Flush (bounded), say `bye`, close everything; whether everything was acknowledged.</summary>
        public bool Stop(bool flush = true, int timeoutMs = 10000)
        {
            bool done = flush && Flush(timeoutMs);
            _stopping = true;
            ClientWebSocket ws = _ws;
            if (done && ws != null) SayGoodbye(ws);
            _wake.Set();
            if (ws != null)
            {
                try
                {
                    lock (_sendGate) ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).Wait(CloseTimeoutMs);
                }
                catch (Exception)
                {
                    // closed already
                }
            }
            if (_connThread != null && !_connThread.Join(CloseTimeoutMs)) _life.Cancel(); // the answer to our close
            _life.Cancel();
            if (_connThread != null) _connThread.Join(3000);
            List<Thread> watchers;
            lock (_gate) watchers = new List<Thread>(_watchers.Values);
            foreach (Thread watcher in watchers) watcher.Join(3000);
            if (_tickThread != null) _tickThread.Join(3000);
            return done;
        }

        public void Dispose()
        {
            if (!_stopping) Stop(false);
        }

        private void SayGoodbye(ClientWebSocket ws)
        {
            var wait = new ManualResetEventSlim(false);
            var beats = new List<string>();
            lock (_gate)
            {
                _byeWait = wait;
                // a boss that is over is told too: an earlier heartbeat may have reported damage
                foreach (var kv in _bosses)
                    if (kv.Value.Buffer.NextSeq > 1) beats.Add(HeartbeatEmpty(kv.Key));
            }
            try
            {
                foreach (string beat in beats) SendText(ws, beat);
                var bye = new JsonObject();
                bye["type"] = "bye";
                SendText(ws, Json.Write(bye));
                wait.Wait(2000);
            }
            catch (Exception)
            {
                // the crash path covers a session that could not say goodbye
            }
        }

        /// <summary>Drop the shard socket as a network failure would (tests, chaos drills).</summary>
        public void DropConnection()
        {
            ClientWebSocket ws = _ws;
            if (ws != null) ws.Abort();
        }

        /// <summary>Heartbeat every boss at the next tick (drills, tests).</summary>
        public void HeartbeatSoon()
        {
            lock (_gate)
            {
                foreach (var b in _bosses.Values) b.LastHeartbeat = 0;
            }
        }

        // --- state subscription -------------------------------------------------------------

        /// <summary>Follow a boss's live state over /ws/bosses/&lt;slug&gt;/ (reconnects on its own):
        /// State, PredictedHp and StateChanged; a boss seen defeated or expired takes no more hits.</summary>
        public void Watch(string boss)
        {
            lock (_gate)
            {
                Boss(boss);
                if (_watchers.ContainsKey(boss) || _stopping) return;
                var thread = new Thread(() => WatchLoop(boss)) { IsBackground = true, Name = "worldboss-watch-" + boss };
                _watchers[boss] = thread;
                thread.Start();
            }
        }

        private void WatchLoop(string slug)
        {
            int attempt = 0;
            while (!_stopping)
            {
                var ws = new ClientWebSocket();
                try
                {
                    using (var open = CancellationTokenSource.CreateLinkedTokenSource(_life.Token))
                    {
                        open.CancelAfter(OpenTimeoutMs);
                        ws.ConnectAsync(new Uri(Url + "/ws/bosses/" + Uri.EscapeDataString(slug) + "/"), open.Token).Wait();
                    }
                    attempt = 0;
                    lock (_gate) Boss(slug).Version = -1; // the snapshot after a (re)connect is the truth
                    string text;
                    while ((text = Receive(ws, _life.Token)) != null) OnState(slug, Json.ParseObject(text));
                }
                catch (Exception)
                {
                    // reconnect below
                }
                finally
                {
                    ws.Abort();
                    ws.Dispose();
                }
                if (_stopping) break;
                _wake.WaitOne(Backoff(attempt++));
            }
        }

        private void OnState(string slug, JsonObject msg)
        {
            if (msg.GetString("type") != "state") return;
            long version = msg.GetLong("version");
            lock (_gate)
            {
                BossEntry b = Boss(slug);
                if (version == 1 && b.Version > 1)
                {
                    b.Version = -1; // the boss was reset: a new fight
                    b.Ended = false;
                }
                if (version <= b.Version) return;
                b.Version = version;
                b.State = msg;
                if (Protocol.IsEnded(msg.GetString("status"))) b.Ended = true;
            }
            Raise(StateChanged, () => { var h = StateChanged; if (h != null) h(slug, msg); });
        }

        // --- connection -------------------------------------------------------------------

        private long Now()
        {
            return _clock.ElapsedMilliseconds + 1000000; // never 0: 0 means "send at once"
        }

        private int Backoff(int attempt)
        {
            int baseMs = ReconnectBackoffMs[Math.Min(attempt, ReconnectBackoffMs.Length - 1)];
            lock (_random) return (int)(baseMs * (0.5 + _random.NextDouble()));
        }

        private void ConnectionLoop()
        {
            int attempt = 0;
            while (!_stopping && _fatal == null)
            {
                bool welcomed = false;
                try
                {
                    welcomed = ConnectOnce();
                }
                catch (Exception)
                {
                    // refused, timed out or lost: reconnect below
                }
                if (welcomed) attempt = 0;
                bool rotating;
                lock (_gate) rotating = _rotate;
                if (!_stopping && _fatal == null && !rotating) _wake.WaitOne(Backoff(attempt++));
            }
        }

        /// <summary>One connection, from the auth frame to its close; whether it was welcomed.</summary>
        private bool ConnectOnce()
        {
            var ws = new ClientWebSocket();
            try
            {
                using (var open = CancellationTokenSource.CreateLinkedTokenSource(_life.Token))
                {
                    open.CancelAfter(OpenTimeoutMs);
                    ws.ConnectAsync(new Uri(Url + "/ws/shards/" + Uri.EscapeDataString(Shard) + "/"), open.Token).Wait();
                    string auth;
                    lock (_gate) auth = AuthFrame();
                    SendText(ws, auth);
                    string first = Receive(ws, open.Token);
                    if (first == null) throw new IOException("closed before a welcome");
                    long epoch;
                    lock (_gate) epoch = OnWelcome(Json.ParseObject(first));
                    lock (_gate)
                    {
                        _lastReceived = Now();
                        _lastPing = Now();
                        _pingSentAt = 0;
                    }
                    _ws = ws;
                    _connected = true;
                    Raise(Connected, () => { var h = Connected; if (h != null) h(epoch); });
                }
                while (true)
                {
                    string text = Receive(ws, _life.Token);
                    if (text == null) return true; // closed (by the platform, or answering our close)
                    if (!OnFrame(Json.ParseObject(text), ws)) break;
                }
                Leave(ws);
                return true;
            }
            finally
            {
                _ws = null;
                if (_connected) Raise(Disconnected, () => { var h = Disconnected; if (h != null) h(); });
                _connected = false;
                ws.Abort();
                ws.Dispose();
            }
        }

        /// <summary>Close a fenced epoch's socket, reading (and dropping) what the platform still
        /// sends until its close answer comes (at most CloseTimeoutMs).</summary>
        private void Leave(ClientWebSocket ws)
        {
            bool answered = false;
            try
            {
                using (var closing = CancellationTokenSource.CreateLinkedTokenSource(_life.Token))
                {
                    closing.CancelAfter(CloseTimeoutMs);
                    lock (_sendGate) ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", closing.Token).Wait();
                    while (Receive(ws, closing.Token) != null) { }
                    answered = true;
                }
            }
            catch (Exception)
            {
                // not answered in time: the connection is dropped
            }
            if (!answered)
            {
                lock (_gate) _stats.UnansweredCloses += 1;
            }
        }

        /// <summary>The next text frame, or null when the socket closed (a permanent close code stops the client).</summary>
        private string Receive(ClientWebSocket ws, CancellationToken token)
        {
            var chunk = new byte[8192];
            using (var message = new MemoryStream())
            {
                while (true)
                {
                    WebSocketReceiveResult result = ws.ReceiveAsync(new ArraySegment<byte>(chunk), token).Result;
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        int code = ws.CloseStatus.HasValue ? (int)ws.CloseStatus.Value : 0;
                        if (Array.IndexOf(Protocol.PermanentCloseCodes, code) >= 0) _fatal = "closed with " + code;
                        return null;
                    }
                    message.Write(chunk, 0, result.Count);
                    if (result.EndOfMessage)
                    {
                        Interlocked.Exchange(ref _lastReceived, Now());
                        return Encoding.UTF8.GetString(message.ToArray());
                    }
                }
            }
        }

        private void SendText(ClientWebSocket ws, string text)
        {
            var bytes = new ArraySegment<byte>(Encoding.UTF8.GetBytes(text));
            lock (_sendGate) // one send at a time on a socket
            {
                if (!ws.SendAsync(bytes, WebSocketMessageType.Text, true, _life.Token).Wait(OpenTimeoutMs))
                {
                    ws.Abort();
                    throw new IOException("send timed out");
                }
            }
        }

        /// <summary>Authenticate with the first frame, resuming the current epoch unless a fence
        /// retires it and nothing is in flight under it any more.</summary>
        private string AuthFrame()
        {
            long? resume = _rotate && !AnyInflight() ? null : _epoch;
            var auth = new JsonObject();
            auth["type"] = "auth";
            auth["token"] = _token;
            if (resume.HasValue && resume.Value != 0) auth["resume"] = resume.Value;
            return Json.Write(auth);
        }

        private bool AnyInflight()
        {
            foreach (var b in _bosses.Values)
                if (b.Buffer.Inflight != null) return true;
            return false;
        }

        private long OnWelcome(JsonObject welcome)
        {
            if (welcome.GetString("type") != "welcome")
            {
                OnError(welcome);
                string code = welcome.GetString("code");
                if (code == ErrorCode.Unauthorized || code == ErrorCode.UnknownShard) _fatal = code;
                throw new IOException("refused: " + code + ": " + welcome.GetString("detail"));
            }
            long epoch = welcome.GetLong("epoch");
            if (welcome.Get("durable") is bool && (bool)welcome.Get("durable"))
            {
                _keeps = true; // keep acknowledged deltas until durable_seq
                foreach (var b in _bosses.Values) b.Buffer.Keeps = true;
            }
            if (_epoch.HasValue && epoch != _epoch.Value)
            {
                foreach (var b in _bosses.Values)
                    if (b.Buffer.Inflight == null) b.Buffer.NextSeq = 1; // a new epoch numbers from 1
            }
            _epoch = epoch;
            _rotate = false;
            _releasing = null;
            _stats.Connects += 1;
            foreach (var b in _bosses.Values) b.SentAt = 0; // re-send at once what was in flight
            return epoch;
        }

        /// <summary>Handle one frame; false when the fenced epoch can be left now.</summary>
        private bool OnFrame(JsonObject msg, ClientWebSocket ws)
        {
            var release = new List<string>();
            bool leave = false;
            lock (_gate)
            {
                HandleFrame(msg);
                if (_rotate && !AnyInflight())
                {
                    if (_releasing == null)
                    {
                        // before leaving an epoch, tell each boss's old session it holds nothing
                        _releasing = new HashSet<string>();
                        foreach (var kv in _bosses)
                            if (!kv.Value.Ended && kv.Value.Buffer.NextSeq > 1) _releasing.Add(kv.Key);
                        foreach (string slug in _releasing) release.Add(HeartbeatEmpty(slug));
                    }
                    leave = _releasing.Count == 0;
                }
            }
            foreach (string text in release) SendText(ws, text);
            return !leave; // fenced: reconnect for a new epoch now that nothing is in flight
        }

        private void HandleFrame(JsonObject msg)
        {
            string kind = msg.GetString("type");
            string slug = msg.GetString("boss") ?? "";
            BossEntry b;
            _bosses.TryGetValue(slug, out b);
            if (_releasing != null && (kind == "heartbeat_ack" || (kind == "error" && msg.GetString("ref") == "heartbeat")))
                _releasing.Remove(slug);
            if (kind == "ack" && b != null)
            {
                if (msg.Get("duplicate") is bool && (bool)msg.Get("duplicate")) _stats.Duplicates += 1;
                Delta inflight = b.Buffer.Inflight;
                if (inflight != null && b.Buffer.Acked(msg.GetLong("seq")))
                {
                    _stats.Acked += inflight.Amount;
                    Raise(Acknowledged, () => { var h = Acknowledged; if (h != null) h(slug, inflight.Seq, inflight.Amount); });
                }
            }
            else if (kind == "heartbeat_ack" && b != null)
            {
                long lastSeq = msg.GetLong("last_seq");
                Delta inflight = b.Buffer.Inflight;
                if (inflight != null && inflight.Seq <= lastSeq)
                {
                    b.Buffer.Acked(inflight.Seq); // it had landed; its ack was lost
                    _stats.Acked += inflight.Amount;
                }
                if (msg.IsLong("durable_seq")) b.Buffer.Durable(msg.GetLong("durable_seq"));
                if (b.Buffer.Behind(lastSeq)) b.SentAt = 0; // the authority lost acknowledged deltas
            }
            else if (kind == "bye_ack")
            {
                _left = msg;
                if (_byeWait != null) _byeWait.Set();
                Raise(Left, () => { var h = Left; if (h != null) h(msg); });
            }
            else if (kind == "error") OnError(msg);
            else if (kind == "pong") _pingSentAt = 0;
        }

        private void OnError(JsonObject msg)
        {
            string code = msg.GetString("code") ?? "error";
            long count;
            _stats.Errors.TryGetValue(code, out count);
            _stats.Errors[code] = count + 1;
            _lastError = msg;
            Raise(ErrorReceived, () => { var h = ErrorReceived; if (h != null) h(msg); });
            string slug = msg.GetString("boss");
            BossEntry b;
            if (slug == null || !_bosses.TryGetValue(slug, out b)) return;
            string reference = msg.GetString("ref");
            LocalBuffer buf = b.Buffer;
            if (code == ErrorCode.Fenced && (reference == "damage" || reference == "heartbeat"))
            {
                if (reference == "damage" && buf.Inflight == null) return; // a late duplicate
                if (buf.NextSeq == 1 && buf.Inflight == null) return;
                Counts credited = null;
                var creditedJson = msg.Get("credited") as JsonObject;
                if (creditedJson != null)
                {
                    credited = new Counts();
                    foreach (string player in creditedJson.OrderedKeys) credited.Set(player, creditedJson.GetLong(player));
                }
                long settled = msg.GetLong("settled");
                buf.Fenced(msg.GetLong("last_seq"), settled, credited);
                _stats.Fences += 1;
                _rotate = true;
                Raise(Fenced, () => { var h = Fenced; if (h != null) h(slug, settled); });
            }
            else if ((code == ErrorCode.NotLive && Protocol.IsEnded(msg.GetString("status"))) || code == ErrorCode.UnknownBoss)
            {
                b.Ended = true;
                buf.DropAll();
            }
            else if (code == ErrorCode.SeqGap && buf.Inflight != null)
            {
                if (msg.IsLong("seq") && msg.GetLong("seq") == buf.Inflight.Seq) // not a late reply to an older send
                {
                    buf.Realign(msg.GetLong("last_seq")); // a reset (renumber) or a rollback (re-send)
                    b.SentAt = 0;
                }
            }
        }

        // --- tick and heartbeat -----------------------------------------------------------

        private void TickLoop()
        {
            while (!_stopping)
            {
                long started = Now();
                ClientWebSocket ws = _ws;
                if (ws != null && _connected)
                {
                    try
                    {
                        if (LinkDead(started))
                        {
                            ws.Abort(); // the connection loop reconnects and resumes the epoch
                            continue;
                        }
                        foreach (string text in FramesDue(started)) SendText(ws, text);
                    }
                    catch (Exception)
                    {
                        // the connection loop notices and reconnects
                    }
                }
                int wait = (int)Math.Max(0, TickMs - (Now() - started));
                if (_wake.WaitOne(wait)) break;
            }
        }

        /// <summary>Nothing came from the platform within the ping timeout after a ping.</summary>
        private bool LinkDead(long at)
        {
            if (PingEveryMs <= 0) return false;
            lock (_gate)
            {
                long received = Interlocked.Read(ref _lastReceived);
                if (_pingSentAt != 0 && received >= _pingSentAt) _pingSentAt = 0; // alive
                if (_pingSentAt != 0 && at - _pingSentAt > PingWaitMs)
                {
                    _pingSentAt = 0;
                    _stats.DeadLinks += 1;
                    return true;
                }
                return false;
            }
        }

        private List<string> FramesDue(long at)
        {
            var frames = new List<string>();
            lock (_gate)
            {
                if (PingEveryMs > 0 && _pingSentAt == 0 && at - _lastPing >= PingEveryMs)
                {
                    var ping = new JsonObject();
                    ping["type"] = "ping";
                    ping["id"] = ++_pingId;
                    frames.Add(Json.Write(ping));
                    _pingSentAt = at;
                    _lastPing = at;
                }
                foreach (var kv in _bosses)
                {
                    BossEntry b = kv.Value;
                    if (b.Ended) continue;
                    string damage = DamageFrame(kv.Key, b, at);
                    if (damage != null) frames.Add(damage);
                    if (_releasing != null) continue; // leaving this epoch
                    string beat = HeartbeatFrame(kv.Key, b, at);
                    if (beat != null) frames.Add(beat);
                }
            }
            return frames;
        }

        private string DamageFrame(string slug, BossEntry b, long at)
        {
            Delta delta = b.Buffer.Inflight;
            if (delta != null)
            {
                if (at - b.SentAt < ResendMs) return null;
                if (b.SentAt != 0) _stats.Resent += 1;
            }
            else if (_rotate) return null; // no new seq under an epoch that is being replaced
            else
            {
                delta = b.Buffer.Take();
                if (delta == null) return null;
            }
            var frame = new JsonObject();
            frame["type"] = "damage";
            frame["boss"] = slug;
            frame["seq"] = delta.Seq;
            frame["amount"] = delta.Amount;
            if (delta.Breakdown.Count > 0) frame["breakdown"] = delta.Breakdown.ToJson();
            b.SentAt = at;
            _stats.Sent += 1;
            return Json.Write(frame);
        }

        private string HeartbeatFrame(string slug, BossEntry b, long at)
        {
            LocalBuffer buf = b.Buffer;
            if (at - b.LastHeartbeat < HeartbeatMs || !(buf.NextSeq > 1 || buf.Unacked > 0)) return null;
            Delta inflight = buf.Inflight;
            // Who the held damage belongs to: a fair crash saga credits these players. The
            // in-flight delta's players go with it: counted only while it is unaccepted.
            Counts flight;
            Counts heldBy = buf.HeldParts(out flight);
            var beat = new JsonObject();
            beat["type"] = "heartbeat";
            beat["boss"] = slug;
            beat["pending"] = buf.Waiting;
            // the highest seq sent so far: a heartbeat the platform gets after a later delta
            // (delayed on a socket this client left) is then known to be stale
            beat["sent"] = buf.NextSeq - 1;
            if (inflight != null)
            {
                var f = new JsonObject();
                f["seq"] = inflight.Seq;
                f["amount"] = inflight.Amount;
                f["breakdown"] = flight.ToJson();
                beat["inflight"] = f;
            }
            else beat["inflight"] = null;
            if (heldBy.Count > 0) beat["breakdown"] = heldBy.ToJson();
            b.LastHeartbeat = at;
            return Json.Write(beat);
        }

        private static string HeartbeatEmpty(string boss)
        {
            var beat = new JsonObject();
            beat["type"] = "heartbeat";
            beat["boss"] = boss;
            beat["pending"] = 0L;
            beat["inflight"] = null;
            return Json.Write(beat);
        }
    }
}
