// Verify the platform's signed webhooks on the game's backend (docs/webhooks.md): headers
// Webhook-Id (dedupe on it), Webhook-Timestamp (unix seconds), Webhook-Signature
// (`v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, several values while a secret is
// rotated), Webhook-Event. The same rules as the Python SDK's webhook_verify, held to
// conformance/vectors/webhooks.json.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace WorldBoss
{
    /// <summary>A webhook was refused; Code says why (stable): webhook_malformed,
    /// webhook_stale or webhook_bad_signature.</summary>
    public sealed class WebhookVerificationException : Exception
    {
        public const string Malformed = "webhook_malformed";
        public const string Stale = "webhook_stale";
        public const string BadSignature = "webhook_bad_signature";

        public readonly string Code;

        public WebhookVerificationException(string code, string message) : base(message)
        {
            Code = code;
        }
    }

    public static class Webhooks
    {
        public const string SignatureVersion = "v1";
        public const string HeaderId = "Webhook-Id";
        public const string HeaderTimestamp = "Webhook-Timestamp";
        public const string HeaderSignature = "Webhook-Signature";
        public const string HeaderEvent = "Webhook-Event";
        public const int DefaultToleranceS = 300;
        public const int MaxSignatures = 8;
        public const int MaxTimestampDigits = 12;

        /// <summary>The hex HMAC-SHA256 of "&lt;timestamp&gt;.&lt;body&gt;" under the secret (one v1 value).</summary>
        public static string Sign(byte[] secret, string timestamp, byte[] body)
        {
            byte[] prefix = Encoding.ASCII.GetBytes(timestamp + ".");
            var message = new byte[prefix.Length + body.Length];
            Buffer.BlockCopy(prefix, 0, message, 0, prefix.Length);
            Buffer.BlockCopy(body, 0, message, prefix.Length, body.Length);
            using (var hmac = new HMACSHA256(secret))
            {
                var sb = new StringBuilder(64);
                foreach (byte b in hmac.ComputeHash(message)) sb.Append(b.ToString("x2", CultureInfo.InvariantCulture));
                return sb.ToString();
            }
        }

        private static WebhookVerificationException Malformed(string message)
        {
            return new WebhookVerificationException(WebhookVerificationException.Malformed, message);
        }

        private static bool IsHex64(string value)
        {
            if (value.Length != 64) return false;
            foreach (char c in value)
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
            return true;
        }

        private static List<string> SignaturesParse(string signature)
        {
            var items = signature.Trim().Split(new[] { ' ', '\t', '\n', '\r', '\f', '\v', ',' }, StringSplitOptions.RemoveEmptyEntries);
            if (items.Length == 0 || items.Length > MaxSignatures)
                throw Malformed(HeaderSignature + " must hold 1 to " + MaxSignatures + " values");
            var found = new List<string>();
            foreach (string item in items)
            {
                int at = item.IndexOf('=');
                if (at < 0) throw Malformed(HeaderSignature + " value " + item.Substring(0, Math.Min(20, item.Length)) + " is not <version>=<hex>");
                if (item.Substring(0, at) != SignatureVersion) continue; // a later scheme's value
                string value = item.Substring(at + 1);
                if (!IsHex64(value)) throw Malformed(HeaderSignature + " has a v1 value that is not 64 lowercase hex digits");
                found.Add(value);
            }
            if (found.Count == 0) throw Malformed(HeaderSignature + " has no " + SignatureVersion + "= value");
            return found;
        }

        /// <summary>Check a webhook's signature and freshness; its parsed JSON body (an object).
        /// <paramref name="body"/> is the raw request body, before any JSON parsing.</summary>
        public static JsonObject Verify(string secret, byte[] body, string timestamp, string signature, double toleranceS = DefaultToleranceS, double? nowS = null)
        {
            if (string.IsNullOrEmpty(secret)) throw Malformed("the secret must be non-empty");
            return Verify(Encoding.UTF8.GetBytes(secret), body, timestamp, signature, toleranceS, nowS);
        }

        public static JsonObject Verify(byte[] secret, byte[] body, string timestamp, string signature, double toleranceS = DefaultToleranceS, double? nowS = null)
        {
            if (secret == null || secret.Length == 0) throw Malformed("the secret must be non-empty");
            string stamp = (timestamp ?? "").Trim();
            bool digits = stamp.Length > 0 && stamp.Length <= MaxTimestampDigits;
            foreach (char c in stamp) digits &= c >= '0' && c <= '9';
            if (!digits) throw Malformed(HeaderTimestamp + " is not unix seconds");
            List<string> candidates = SignaturesParse(signature ?? "");
            double now = nowS ?? (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
            if (Math.Abs(now - long.Parse(stamp, CultureInfo.InvariantCulture)) > toleranceS)
                throw new WebhookVerificationException(WebhookVerificationException.Stale, HeaderTimestamp + " is further than " + toleranceS + " s from now");
            byte[] expected = Encoding.ASCII.GetBytes(Sign(secret, stamp, body));
            bool matched = false;
            foreach (string candidate in candidates)
                matched = FixedTimeEquals(expected, Encoding.ASCII.GetBytes(candidate)) || matched; // no early exit
            if (!matched)
                throw new WebhookVerificationException(WebhookVerificationException.BadSignature, "no signature matches this body and timestamp");
            object data;
            try
            {
                data = Json.Parse(new UTF8Encoding(false, true).GetString(body));
            }
            catch (Exception err)
            {
                throw Malformed("the body is not JSON: " + err.Message);
            }
            var obj = data as JsonObject;
            if (obj == null) throw Malformed("the body is not a JSON object");
            return obj;
        }

        private static bool FixedTimeEquals(byte[] a, byte[] b)
        {
            if (a.Length != b.Length) return false;
            int diff = 0;
            for (int i = 0; i < a.Length; i++) diff |= a[i] ^ b[i];
            return diff == 0;
        }
    }
}
