// The conformance kit's driver for this SDK: JSON-line commands on stdin, one JSON line each on
// stdout (conformance/README.md, "The driver protocol"). `mono sdk-cs/bin/WorldBoss.Driver.exe`.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text;
using System.Threading;
using WorldBoss;

namespace WorldBoss.Conformance
{
    public static class Driver
    {
        public const string SdkVersion = "0.1.0";
        private static ShardClient _client;
        private static readonly JsonObject Generated = new JsonObject();

        private static ShardClient C
        {
            get
            {
                if (_client == null) throw new InvalidOperationException("not connected");
                return _client;
            }
        }

        private static int Ms(JsonObject cmd, int fallback = 10000)
        {
            return (int)cmd.GetLong("timeout_ms", fallback);
        }

        private static string Str(JsonObject cmd, string key)
        {
            object value = cmd.Get(key);
            return value == null ? null : value as string ?? Json.Write(value);
        }

        public static int Main()
        {
            var stdout = new System.IO.StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true };
            var stdin = new System.IO.StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false));
            string line;
            while ((line = stdin.ReadLine()) != null)
            {
                if (line.Trim().Length == 0) continue;
                JsonObject cmd;
                try
                {
                    cmd = Json.ParseObject(line);
                }
                catch (JsonException err)
                {
                    Console.Error.WriteLine("not a command: " + err.Message);
                    continue;
                }
                string name = cmd.GetString("cmd") ?? "";
                if (name == "quit") break;
                var reply = new JsonObject();
                reply["id"] = cmd.Get("id");
                try
                {
                    JsonObject result = Run(name, cmd);
                    if (result == null)
                    {
                        reply["ok"] = false;
                        reply["error"] = "unsupported";
                    }
                    else
                    {
                        reply["ok"] = true;
                        foreach (string key in result.OrderedKeys) reply[key] = result[key];
                    }
                }
                catch (Exception err)
                {
                    Console.Error.WriteLine(err.ToString());
                    reply["ok"] = false;
                    reply["error"] = err.GetType().Name + ": " + err.Message;
                }
                stdout.WriteLine(Json.Write(reply));
                if (name == "crash") Environment.Exit(0); // die holding what it holds
            }
            if (_client != null) _client.Stop(false);
            return 0;
        }

        private static JsonObject Run(string name, JsonObject cmd)
        {
            var r = new JsonObject();
            switch (name)
            {
                case "hello":
                    r["sdk"] = "csharp";
                    r["version"] = SdkVersion;
                    r["protocol"] = (long)Protocol.Version;
                    return r;
                case "connect":
                    var options = new ShardClientOptions
                    {
                        Shard = Str(cmd, "shard"),
                        Token = Str(cmd, "token"),
                        TickMs = (int)cmd.GetLong("tick_ms", 100),
                        HeartbeatMs = (int)cmd.GetLong("heartbeat_ms", 1000),
                    };
                    if (cmd.Get("max_pending") != null) options.MaxPending = cmd.GetLong("max_pending");
                    _client = new ShardClient(Str(cmd, "url"), options);
                    _client.Start();
                    if (!_client.WaitConnected(Ms(cmd))) throw new TimeoutException("not connected after " + Ms(cmd) + " ms");
                    r["epoch"] = _client.Epoch;
                    return r;
                case "hit":
                    return Hit(cmd);
                case "flush":
                    r["flushed"] = C.Flush(Ms(cmd));
                    return r;
                case "wait_acked":
                    {
                        long goal = cmd.GetLong("amount");
                        var clock = Stopwatch.StartNew();
                        while (C.Stats.Acked < goal && clock.ElapsedMilliseconds < Ms(cmd)) Thread.Sleep(10);
                        long acked = C.Stats.Acked;
                        r["acked"] = acked;
                        r["reached"] = acked >= goal;
                        return r;
                    }
                case "wait_connected":
                    {
                        bool hasAbove = cmd.Get("epoch_above") != null;
                        long above = cmd.GetLong("epoch_above");
                        var clock = Stopwatch.StartNew();
                        while (clock.ElapsedMilliseconds < Ms(cmd))
                        {
                            if (C.IsConnected && (!hasAbove || (C.Epoch ?? 0) > above))
                            {
                                r["connected"] = true;
                                r["epoch"] = C.Epoch;
                                return r;
                            }
                            Thread.Sleep(10);
                        }
                        r["connected"] = false;
                        r["epoch"] = C.Epoch;
                        return r;
                    }
                case "heartbeat":
                    C.HeartbeatSoon();
                    return r;
                case "stats":
                    return Stats();
                case "bye":
                    r["flushed"] = C.Stop(true, Ms(cmd));
                    r["left"] = C.LeftFrame;
                    return r;
                case "crash":
                    return r;
                case "sign_ticket":
                    r["ticket"] = Tickets.Sign(
                        Str(cmd, "secret"), Str(cmd, "key_id"), Str(cmd, "player"), (int)cmd.GetLong("ttl_s", 3600),
                        Str(cmd, "shard"), Str(cmd, "boss"), NowS(cmd));
                    return r;
                case "verify_webhook":
                    try
                    {
                        JsonObject body = Webhooks.Verify(
                            Str(cmd, "secret"), Encoding.UTF8.GetBytes(Str(cmd, "body") ?? ""), Str(cmd, "timestamp"),
                            Str(cmd, "signature"), cmd.Get("tolerance_s") == null ? Webhooks.DefaultToleranceS : Number(cmd.Get("tolerance_s")),
                            NowS(cmd));
                        r["valid"] = true;
                        r["body"] = body;
                    }
                    catch (WebhookVerificationException err)
                    {
                        r["valid"] = false;
                        r["code"] = err.Code;
                    }
                    return r;
                default:
                    return null;
            }
        }

        private static double Number(object value)
        {
            if (value is long) return (long)value;
            return (double)value;
        }

        private static double? NowS(JsonObject cmd)
        {
            object value = cmd.Get("now_s");
            return value == null ? (double?)null : Number(value);
        }

        private static JsonObject Hit(JsonObject cmd)
        {
            string boss = Str(cmd, "boss");
            long amount = cmd.GetLong("amount");
            long count = cmd.GetLong("count", 1);
            string player = Str(cmd, "player");
            long done = 0;
            var r = new JsonObject();
            try
            {
                for (; done < count; done++) C.Hit(boss, amount, player);
            }
            catch (BufferFullException)
            {
                r["error"] = "buffer_full";
            }
            finally
            {
                Generated[boss] = Generated.GetLong(boss) + done * amount;
            }
            r["hits"] = done;
            return r;
        }

        private static JsonObject Stats()
        {
            ClientStats s = C.Stats;
            var unacked = new JsonObject();
            var dropped = new JsonObject();
            long replayed = 0, kept = 0;
            foreach (BossHolding h in C.Holdings())
            {
                unacked[h.Boss] = h.Unacked;
                dropped[h.Boss] = h.Dropped;
                replayed += h.Replayed;
                kept += h.Kept;
            }
            var errors = new JsonObject();
            foreach (var kv in s.Errors) errors[kv.Key] = kv.Value;
            var r = new JsonObject();
            r["epoch"] = C.Epoch;
            r["connected"] = C.IsConnected;
            r["sent"] = s.Sent;
            r["resent"] = s.Resent;
            r["acked"] = s.Acked;
            r["duplicates"] = s.Duplicates;
            r["fences"] = s.Fences;
            r["connects"] = s.Connects;
            r["unanswered_closes"] = s.UnansweredCloses;
            r["dead_links"] = s.DeadLinks;
            r["errors"] = errors;
            r["generated"] = Generated;
            r["unacked"] = unacked;
            r["dropped"] = dropped;
            r["replayed"] = replayed;
            r["kept"] = kept;
            return r;
        }
    }
}
