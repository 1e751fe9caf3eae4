// The platform's protocol constants (docs/protocol.md), as sdk/worldboss_sdk/protocol.py and
// the TypeScript SDK's generated protocol.ts hold them; tests/VectorsTests.cs checks them
// against sdk-ts/src/protocol.ts, the file generated from the server's own source.
using System.Text.RegularExpressions;

namespace WorldBoss
{
    public static class Protocol
    {
        public const int Version = 1;
        public const int MaxFrameBytes = 65536;
        public const long MaxDeltaAmount = 1099511627776L; // 2^40
        public const long MaxSeq = 9007199254740991L; // 2^53 - 1
        public const int MaxBreakdownEntries = 1000;
        public const int MaxPlayerIdLength = 64;
        public const string PlayerIdPattern = "^[A-Za-z0-9_.:@-]{1,64}$";
        public const string ShardKeyPattern = "^[a-z0-9][a-z0-9_-]{0,63}$";
        public static readonly string[] ReservedPlayerPrefixes = { "user:", "guest:", "sim:" };
        public static readonly int[] PermanentCloseCodes = { CloseCode.Unauthorized, CloseCode.Forbidden, CloseCode.UnknownBoss };
        public static readonly string[] EndedStatuses = { Status.Defeated, Status.Expired };

        internal static readonly Regex PlayerId = new Regex(PlayerIdPattern, RegexOptions.CultureInvariant);

        public static bool IsEnded(string status)
        {
            return status == Status.Defeated || status == Status.Expired;
        }
    }

    public static class CloseCode
    {
        public const int Normal = 1000;
        public const int TooLarge = 1009;
        public const int InternalError = 1011;
        public const int TryAgain = 1013;
        public const int Malformed = 4400;
        public const int Unauthorized = 4401;
        public const int Forbidden = 4403;
        public const int UnknownBoss = 4404;
        public const int RateLimited = 4429;
    }

    public static class ErrorCode
    {
        public const string Error = "error";
        public const string Invalid = "invalid";
        public const string InvalidAmount = "invalid_amount";
        public const string Malformed = "malformed";
        public const string UnknownType = "unknown_type";
        public const string TooLarge = "too_large";
        public const string UnknownBoss = "unknown_boss";
        public const string UnknownShard = "unknown_shard";
        public const string UnknownEpoch = "unknown_epoch";
        public const string Unauthorized = "unauthorized";
        public const string Forbidden = "forbidden";
        public const string Fenced = "fenced";
        public const string NotLive = "not_live";
        public const string SeqGap = "seq_gap";
        public const string InvalidTransition = "invalid_transition";
        public const string AuthorityUnavailable = "authority_unavailable";
        public const string RateLimited = "rate_limited";
        public const string BufferFull = "buffer_full";
        public const string TicketInvalid = "ticket_invalid";
        public const string TicketExpired = "ticket_expired";
        public const string WrongShardKind = "wrong_shard_kind";
        public const string TooManyPlayers = "too_many_players";
        public const string NotFound = "not_found";
        public const string MethodNotAllowed = "method_not_allowed";
        public const string AlreadyClaimed = "already_claimed";
    }

    public static class Status
    {
        public const string Draft = "draft";
        public const string Live = "live";
        public const string Paused = "paused";
        public const string Defeated = "defeated";
        public const string Expired = "expired";
    }
}
