// Sign player tickets on the game's backend (docs/sdk.md, "Player tickets"); the same scheme as
// core/tickets.py verifies: `v1.<kid>.<payload_b64url>.<sig_b64url>`, payload the compact JSON
// {"sub", "exp", "iat", "shard"?, "boss"?} in that order (non-ASCII as \uXXXX), sig
// HMAC-SHA256(secret, "v1.<kid>.<payload_b64url>"), both unpadded base64url. Never sign in a
// game client: whoever holds the secret can be any player.
using System;
using System.Security.Cryptography;
using System.Text;

namespace WorldBoss
{
    public static class Tickets
    {
        public const int MaxTicketTtlS = 24 * 3600;

        /// <summary>A ticket vouching for <paramref name="player"/> for <paramref name="ttlS"/>
        /// seconds from <paramref name="nowS"/> (default: now), limited to a shard key and/or a
        /// boss slug when given.</summary>
        public static string Sign(string secret, string keyId, string player, int ttlS = 3600, string shard = null, string boss = null, double? nowS = null)
        {
            return Sign(Encoding.UTF8.GetBytes(secret), keyId, player, ttlS, shard, boss, nowS);
        }

        public static string Sign(byte[] secret, string keyId, string player, int ttlS = 3600, string shard = null, string boss = null, double? nowS = null)
        {
            if (ttlS < 1 || ttlS > MaxTicketTtlS)
                throw new ArgumentOutOfRangeException("ttlS", "ttlS must be a whole number of seconds from 1 to " + MaxTicketTtlS);
            double now = nowS ?? (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
            long issued = (long)Math.Floor(now);
            var payload = new JsonObject();
            payload["sub"] = player;
            payload["exp"] = issued + ttlS;
            payload["iat"] = issued;
            if (shard != null) payload["shard"] = shard;
            if (boss != null) payload["boss"] = boss;
            string body = Base64Url(Encoding.ASCII.GetBytes(Json.Write(payload)));
            string signed = "v1." + keyId + "." + body;
            using (var hmac = new HMACSHA256(secret))
            {
                return signed + "." + Base64Url(hmac.ComputeHash(Encoding.ASCII.GetBytes(signed)));
            }
        }

        internal static string Base64Url(byte[] raw)
        {
            return Convert.ToBase64String(raw).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        }
    }
}
