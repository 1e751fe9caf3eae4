// The shared conformance vectors (conformance/vectors/*.json, written from the platform's own
// code) and the protocol constants against the file generated from the server's source.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;

namespace WorldBoss.Tests
{
    public static class VectorTests
    {
        private static JsonObject Vectors(string name)
        {
            return Json.ParseObject(File.ReadAllText(Path.Combine(Runner.Root, "conformance", "vectors", name), Encoding.UTF8));
        }

        private static double Num(object value)
        {
            return value is long ? (long)value : (double)value;
        }

        public static void TestTicketSignVectorsByteForByte()
        {
            var cases = (List<object>)Vectors("tickets.json")["sign"];
            Assert.True(cases.Count > 0, "sign vectors");
            foreach (JsonObject c in cases)
            {
                string got = Tickets.Sign(c.GetString("secret"), c.GetString("key_id"), c.GetString("player"),
                    (int)c.GetLong("ttl_s"), c.GetString("shard"), c.GetString("boss"), Num(c.Get("now_s")));
                Assert.Equal(c.GetString("ticket"), got, c.GetString("player"));
            }
        }

        public static void TestTicketTtlBounds()
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => Tickets.Sign("s", "k", "p", 0), "ttl 0");
            Assert.Throws<ArgumentOutOfRangeException>(() => Tickets.Sign("s", "k", "p", Tickets.MaxTicketTtlS + 1), "ttl past a day");
        }

        public static void TestWebhookVectorsVerdicts()
        {
            var cases = (List<object>)Vectors("webhooks.json")["cases"];
            Assert.True(cases.Count > 0, "webhook vectors");
            foreach (JsonObject c in cases)
            {
                string verdict;
                try
                {
                    JsonObject body = Webhooks.Verify(c.GetString("secret"), Encoding.UTF8.GetBytes(c.GetString("body")),
                        c.GetString("timestamp"), c.GetString("signature"), Num(c.Get("tolerance_s")), Num(c.Get("now_s")));
                    Assert.True(body != null, "a body");
                    verdict = "ok";
                }
                catch (WebhookVerificationException err)
                {
                    verdict = err.Code;
                }
                Assert.Equal(c.GetString("expect"), verdict, c.GetString("name"));
            }
        }

        public static void TestWebhookSignRoundTrip()
        {
            byte[] secret = Encoding.UTF8.GetBytes("a-secret");
            byte[] body = Encoding.UTF8.GetBytes("{\"event\":\"boss.defeated\",\"name\":\"Dragón\"}");
            string signature = "v1=" + Webhooks.Sign(secret, "1750000000", body);
            JsonObject parsed = Webhooks.Verify(secret, body, "1750000000", signature, 300, 1750000001);
            Assert.Equal("Dragón", parsed.GetString("name"), "the parsed body");
        }
    }

    public static class ProtocolTests
    {
        private static string Generated()
        {
            return File.ReadAllText(Path.Combine(Runner.Root, "sdk-ts", "src", "protocol.ts"));
        }

        private static string Value(string text, string pattern)
        {
            Match m = Regex.Match(text, pattern, RegexOptions.Multiline);
            Assert.True(m.Success, "protocol.ts has " + pattern);
            return m.Groups[1].Value;
        }

        public static void TestConstantsMatchTheServersProtocol()
        {
            string ts = Generated();
            Assert.Equal(Value(ts, @"PROTOCOL_VERSION = (\d+);"), Protocol.Version.ToString(), "PROTOCOL_VERSION");
            Assert.Equal(Value(ts, @"MAX_FRAME_BYTES = (\d+);"), Protocol.MaxFrameBytes.ToString(), "MAX_FRAME_BYTES");
            Assert.Equal(Value(ts, @"MAX_DELTA_AMOUNT = (\d+);"), Protocol.MaxDeltaAmount.ToString(), "MAX_DELTA_AMOUNT");
            Assert.Equal(Value(ts, @"MAX_SEQ = (\d+);"), Protocol.MaxSeq.ToString(), "MAX_SEQ");
            Assert.Equal(Value(ts, @"MAX_BREAKDOWN_ENTRIES = (\d+);"), Protocol.MaxBreakdownEntries.ToString(), "MAX_BREAKDOWN_ENTRIES");
            Assert.Equal(Value(ts, @"PLAYER_ID_PATTERN = /(.*)/;"), Protocol.PlayerIdPattern, "PLAYER_ID_PATTERN");
            Assert.Equal(Value(ts, @"SHARD_KEY_PATTERN = /(.*)/;"), Protocol.ShardKeyPattern, "SHARD_KEY_PATTERN");
            Assert.Equal(Value(ts, @"PERMANENT_CLOSE_CODES: readonly number\[\] = \[(.*)\];"), string.Join(", ", Protocol.PermanentCloseCodes), "PERMANENT_CLOSE_CODES");
            Assert.Equal(Value(ts, @"RESERVED_PLAYER_PREFIXES = \[(.*)\] as const;"), "\"" + string.Join("\", \"", Protocol.ReservedPlayerPrefixes) + "\"", "RESERVED_PLAYER_PREFIXES");
        }

        public static void TestEveryErrorAndCloseCode()
        {
            string ts = Generated();
            string errors = Value(ts, @"export const ErrorCode = \{([^}]*)\}");
            var mine = new Dictionary<string, string>();
            foreach (var field in typeof(ErrorCode).GetFields()) mine[(string)field.GetValue(null)] = field.Name;
            int count = 0;
            foreach (Match m in Regex.Matches(errors, "\"([a-z_]+)\""))
            {
                Assert.True(mine.ContainsKey(m.Groups[1].Value), "ErrorCode has " + m.Groups[1].Value);
                count++;
            }
            Assert.Equal(count, mine.Count, "ErrorCode count");
            string closes = Value(ts, @"export const CloseCode = \{([^}]*)\}");
            var codes = new HashSet<int>();
            foreach (var field in typeof(CloseCode).GetFields()) codes.Add((int)field.GetValue(null));
            int closeCount = 0;
            foreach (Match m in Regex.Matches(closes, @": (\d+),"))
            {
                Assert.True(codes.Contains(int.Parse(m.Groups[1].Value)), "CloseCode has " + m.Groups[1].Value);
                closeCount++;
            }
            Assert.Equal(closeCount, codes.Count, "CloseCode count");
        }

        public static void TestPlayerIdCheck()
        {
            ShardClient.PlayerIdCheck("hero-42");
            ShardClient.PlayerIdCheck("p.1:x@y_z-w");
            Assert.Throws<ArgumentException>(() => ShardClient.PlayerIdCheck("user:7"), "a platform id");
            Assert.Throws<ArgumentException>(() => ShardClient.PlayerIdCheck("a b"), "a space");
            Assert.Throws<ArgumentException>(() => ShardClient.PlayerIdCheck("a\n"), "a newline");
            Assert.Throws<ArgumentException>(() => ShardClient.PlayerIdCheck(new string('a', 65)), "65 characters");
        }
    }
}
