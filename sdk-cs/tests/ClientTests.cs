// The client against a loopback WebSocket server of the test's own (RFC 6455 over TcpListener):
// it authenticates with the first frame, sends deltas, and its events are raised only by
// Dispatch(), on the thread that calls it.
using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading;

namespace WorldBoss.Tests
{
    internal sealed class LoopbackServer : IDisposable
    {
        private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        private TcpClient _peer;
        private NetworkStream _stream;

        public LoopbackServer()
        {
            _listener.Start();
        }

        public string Url { get { return "ws://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port; } }

        public string Path;

        public void Accept()
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!_listener.Pending())
            {
                if (DateTime.UtcNow > deadline) throw new AssertionFailed("no connection in 10 s");
                Thread.Sleep(5);
            }
            _peer = _listener.AcceptTcpClient();
            _peer.ReceiveTimeout = 10000;
            _stream = _peer.GetStream();
            var head = new StringBuilder();
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal)) head.Append((char)ReadByte());
            string key = null;
            foreach (string line in head.ToString().Split(new[] { "\r\n" }, StringSplitOptions.None))
            {
                if (line.StartsWith("GET ", StringComparison.Ordinal)) Path = line.Split(' ')[1];
                if (line.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase)) key = line.Substring(18).Trim();
            }
            string accept;
            using (var sha = SHA1.Create())
                accept = Convert.ToBase64String(sha.ComputeHash(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
            byte[] reply = Encoding.ASCII.GetBytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
            _stream.Write(reply, 0, reply.Length);
        }

        private int ReadByte()
        {
            int b = _stream.ReadByte();
            if (b < 0) throw new System.IO.IOException("closed");
            return b;
        }

        /// <summary>The next text frame the client sent (client frames are masked).</summary>
        public JsonObject Receive()
        {
            int first = ReadByte();
            int second = ReadByte();
            long length = second & 0x7f;
            if (length == 126) length = (ReadByte() << 8) | ReadByte();
            else if (length == 127)
            {
                length = 0;
                for (int i = 0; i < 8; i++) length = (length << 8) + ReadByte();
            }
            var mask = new byte[4];
            for (int i = 0; i < 4; i++) mask[i] = (byte)ReadByte();
            var payload = new byte[length];
            for (long i = 0; i < length; i++) payload[i] = (byte)(ReadByte() ^ mask[i % 4]);
            Assert.Equal(0x81, first, "a final text frame");
            return Json.ParseObject(Encoding.UTF8.GetString(payload));
        }

        public void Send(string text)
        {
            byte[] payload = Encoding.UTF8.GetBytes(text);
            var frame = new List<byte> { 0x81 };
            if (payload.Length < 126) frame.Add((byte)payload.Length);
            else
            {
                frame.Add(126);
                frame.Add((byte)(payload.Length >> 8));
                frame.Add((byte)payload.Length);
            }
            frame.AddRange(payload);
            _stream.Write(frame.ToArray(), 0, frame.Count);
        }

        public void Dispose()
        {
            if (_peer != null) _peer.Close();
            _listener.Stop();
        }
    }

    public static class ClientTests
    {
        private static void Until(Func<bool> condition, string what)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!condition())
            {
                if (DateTime.UtcNow > deadline) throw new AssertionFailed("timed out waiting for " + what);
                Thread.Sleep(5);
            }
        }

        private static JsonObject Next(LoopbackServer server, string type, List<JsonObject> others)
        {
            while (true)
            {
                JsonObject frame = server.Receive();
                if (frame.GetString("type") == type) return frame;
                others.Add(frame);
            }
        }

        public static void TestEventsWaitForDispatchOnTheCallersThread()
        {
            using (var server = new LoopbackServer())
            {
                var client = new ShardClient(server.Url + "/", new ShardClientOptions { Shard = "eu-1", Token = "tok", TickMs = 20, HeartbeatMs = 100 });
                int mainThread = Thread.CurrentThread.ManagedThreadId;
                var seen = new List<string>();
                client.Connected += epoch => seen.Add("connected " + epoch + (Thread.CurrentThread.ManagedThreadId == mainThread ? " here" : " elsewhere"));
                client.Acknowledged += (boss, seq, amount) => seen.Add("ack " + boss + " " + seq + " " + amount);
                client.Start();
                server.Accept();
                Assert.Equal("/ws/shards/eu-1/", server.Path, "the shard socket");
                JsonObject auth = server.Receive();
                Assert.Equal("auth", auth.GetString("type"), "authenticates with the first frame");
                Assert.Equal("tok", auth.GetString("token"), "its token");
                Assert.True(auth.Get("resume") == null, "nothing to resume yet");
                client.Hit("ragnaros", 12, "alice"); // buffered while not welcomed: one delta
                client.Hit("ragnaros", 3);
                server.Send("{\"type\":\"welcome\",\"v\":1,\"role\":\"server\",\"shard\":\"eu-1\",\"epoch\":7,\"resumed\":false,\"durable\":true}");
                Assert.True(client.WaitConnected(10000), "welcomed");
                Assert.Equal(0, seen.Count, "nothing raised before Dispatch");
                var beats = new List<JsonObject>();
                JsonObject damage = Next(server, "damage", beats);
                Assert.Equal("damage", damage.GetString("type"), "a delta");
                Assert.Equal(1L, damage.GetLong("seq"), "seq 1");
                Assert.Equal(15L, damage.GetLong("amount"), "the hits summed");
                Assert.Equal(12L, ((JsonObject)damage["breakdown"]).GetLong("alice"), "per player");
                JsonObject again = Next(server, "damage", beats);
                Assert.Equal(1L, again.GetLong("seq"), "the same seq re-sent until acked");
                Assert.Equal(15L, again.GetLong("amount"), "the same amount");
                JsonObject beat = Next(server, "heartbeat", beats);
                Assert.Equal(1L, ((JsonObject)beat["inflight"]).GetLong("seq"), "a heartbeat reports the in-flight delta");
                Assert.Equal(12L, ((JsonObject)((JsonObject)beat["inflight"])["breakdown"]).GetLong("alice"), "with its players");
                server.Send("{\"type\":\"ack\",\"boss\":\"ragnaros\",\"seq\":1,\"duplicate\":false}");
                Until(() => client.Unacked("ragnaros") == 0, "the ack");
                Assert.Equal(0, seen.Count, "still nothing raised");
                Assert.Equal(2, client.Dispatch(), "two events");
                Assert.Equal("connected 7 here", seen[0], "Connected on this thread");
                Assert.Equal("ack ragnaros 1 15", seen[1], "Acknowledged");
                Assert.Equal(15L, client.Stats.Acked, "acked");
                client.Stop(false);
            }
        }

        public static void TestASilentLinkIsLeftAndTheEpochResumed()
        {
            using (var server = new LoopbackServer())
            {
                var client = new ShardClient(server.Url, new ShardClientOptions { Shard = "eu-1", Token = "tok", PingIntervalMs = 100, PingTimeoutMs = 200 });
                client.Start();
                server.Accept();
                server.Receive();
                server.Send("{\"type\":\"welcome\",\"v\":1,\"role\":\"server\",\"shard\":\"eu-1\",\"epoch\":7}");
                var others = new List<JsonObject>();
                JsonObject ping = Next(server, "ping", others);
                Assert.True(ping.Get("id") != null, "an application ping with an id");
                // the platform answers nothing from now on: a dead link
                server.Accept();
                JsonObject auth = server.Receive();
                Assert.Equal("auth", auth.GetString("type"), "a new connection");
                Assert.Equal(7L, auth.GetLong("resume"), "resuming its epoch");
                Assert.Equal(1L, client.Stats.DeadLinks, "one dead link noticed");
                client.Stop(false);
            }
        }

        public static void TestWatchPredictsHpAndStopsHitsOnceTheBossIsOver()
        {
            using (var server = new LoopbackServer())
            {
                var client = new ShardClient(server.Url, new ShardClientOptions { Shard = "eu-1", Token = "tok" });
                var states = new List<long>();
                client.StateChanged += (boss, state) => states.Add(state.GetLong("hp"));
                client.Hit("ragnaros", 100, "alice"); // not started: held, unacknowledged
                Assert.True(client.PredictedHp("ragnaros") == null, "no state yet");
                client.Watch("ragnaros");
                server.Accept();
                Assert.Equal("/ws/bosses/ragnaros/", server.Path, "the boss's state socket");
                server.Send("{\"type\":\"state\",\"boss\":\"ragnaros\",\"hp\":1000,\"max_hp\":1000,\"version\":3,\"status\":\"live\",\"phase\":\"p1\",\"phase_index\":0,\"ts\":1,\"gen\":1}");
                Until(() => client.PredictedHp("ragnaros") == 900, "the predicted HP");
                server.Send("{\"type\":\"state\",\"boss\":\"ragnaros\",\"hp\":1,\"max_hp\":1000,\"version\":2,\"status\":\"live\",\"phase\":\"p1\",\"phase_index\":0,\"ts\":1,\"gen\":1}");
                server.Send("{\"type\":\"state\",\"boss\":\"ragnaros\",\"hp\":0,\"max_hp\":1000,\"version\":4,\"status\":\"defeated\",\"phase\":\"p1\",\"phase_index\":0,\"ts\":2,\"gen\":1}");
                Until(() => client.State("ragnaros").GetLong("version") == 4, "the newer state");
                client.Hit("ragnaros", 50);
                Assert.Equal(100L, client.Unacked("ragnaros"), "a boss that is over takes no more hits");
                Assert.Equal(0, states.Count, "nothing raised before Dispatch");
                client.Dispatch();
                Assert.Equal("1000,0", string.Join(",", states), "the newer states only, in order");
                client.Stop(false);
            }
        }

        public static void TestRefusedTokenIsFinal()
        {
            using (var server = new LoopbackServer())
            {
                var client = new ShardClient(server.Url, new ShardClientOptions { Shard = "eu-1", Token = "bad" });
                client.Start();
                server.Accept();
                server.Receive();
                server.Send("{\"type\":\"error\",\"code\":\"unauthorized\",\"detail\":\"bad token\"}");
                Until(() => client.Fatal != null, "the refusal");
                Assert.Equal("unauthorized", client.Fatal, "no reconnect");
                Assert.Equal(1L, client.Stats.Errors["unauthorized"], "counted");
                client.Stop(false);
            }
        }
    }
}
