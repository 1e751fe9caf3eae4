// The local shard buffer: hits summed in memory, one delta per tick, exactly-once bookkeeping.
// The same rules as the Python SDK's worldboss_sdk/buffer.py (docs/sdk.md): Add is O(1); Take
// gives the in-flight delta again (same seq, same amount) until it is acknowledged, else a new
// one; Fenced applies a `fenced` error's settlement; acknowledged deltas are kept until the
// platform reports them durable (`durable_seq`) and re-sent under their own seqs after a
// rollback (Realign). Not thread-safe: ShardClient guards it with its lock.
using System;
using System.Collections.Generic;

namespace WorldBoss
{
    /// <summary>The buffer is at its bound (the platform has not taken deltas for a while).</summary>
    public sealed class BufferFullException : Exception
    {
        public readonly long Pending;

        public BufferFullException(string message, long pending) : base(message)
        {
            Pending = pending;
        }
    }

    /// <summary>player -> damage, in the order players were first added (as a Python dict).</summary>
    public sealed class Counts : IEnumerable<KeyValuePair<string, long>>
    {
        private sealed class Cell
        {
            public string Key;
            public long Value;
        }

        private readonly Dictionary<string, LinkedListNode<Cell>> _index = new Dictionary<string, LinkedListNode<Cell>>();
        private readonly LinkedList<Cell> _order = new LinkedList<Cell>();

        public Counts() { }

        public Counts(IEnumerable<KeyValuePair<string, long>> items)
        {
            foreach (var kv in items) Add(kv.Key, kv.Value);
        }

        public int Count { get { return _index.Count; } }

        public bool Contains(string key)
        {
            return _index.ContainsKey(key);
        }

        public long Get(string key)
        {
            LinkedListNode<Cell> node;
            return _index.TryGetValue(key, out node) ? node.Value.Value : 0;
        }

        /// <summary>Set <paramref name="key"/> (a new key goes last).</summary>
        public void Set(string key, long value)
        {
            LinkedListNode<Cell> node;
            if (_index.TryGetValue(key, out node)) node.Value.Value = value;
            else _index[key] = _order.AddLast(new Cell { Key = key, Value = value });
        }

        public void Add(string key, long amount)
        {
            Set(key, Get(key) + amount);
        }

        public void Remove(string key)
        {
            LinkedListNode<Cell> node;
            if (_index.TryGetValue(key, out node))
            {
                _order.Remove(node);
                _index.Remove(key);
            }
        }

        public long Sum()
        {
            long total = 0;
            foreach (var cell in _order) total += cell.Value;
            return total;
        }

        public Dictionary<string, long> ToDictionary()
        {
            var d = new Dictionary<string, long>();
            foreach (var cell in _order) d[cell.Key] = cell.Value;
            return d;
        }

        /// <summary>The entries as a JSON object in their order.</summary>
        public JsonObject ToJson()
        {
            var obj = new JsonObject();
            foreach (var cell in _order) obj[cell.Key] = cell.Value;
            return obj;
        }

        public IEnumerator<KeyValuePair<string, long>> GetEnumerator()
        {
            foreach (var cell in _order) yield return new KeyValuePair<string, long>(cell.Key, cell.Value);
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator()
        {
            return GetEnumerator();
        }
    }

    /// <summary>One shard tick's damage: `damage {boss, seq, amount, breakdown}`.</summary>
    public sealed class Delta
    {
        public readonly long Seq;
        public readonly long Amount;
        public readonly Counts Breakdown;

        public Delta(long seq, long amount, Counts breakdown)
        {
            Seq = seq;
            Amount = amount;
            Breakdown = breakdown ?? new Counts();
        }
    }

    /// <summary>One boss's buffer inside one shard session.</summary>
    public sealed class LocalBuffer
    {
        public const int DefaultMaxPlayers = 50000;
        /// <summary>Acknowledged deltas kept for a re-send (about 3 minutes of 100 ms ticks).</summary>
        public const int DefaultMaxKept = 2000;

        public long Pending; // damage in no delta yet
        public long Unattributed; // the part of Pending with no player
        public Counts Players = new Counts(); // player -> pending damage
        public Delta Inflight; // sent, not acknowledged
        public long NextSeq = 1;
        public long Dropped; // damage given up on (boss over, or settled)
        public List<Delta> Kept = new List<Delta>(); // acknowledged, not yet durable (seq order)
        public bool Keeps; // the platform reports durability: keep acked deltas until then
        public List<Delta> Queued = new List<Delta>(); // kept deltas to re-send after the in-flight one
        public long Replayed; // deltas re-sent because the authority came back behind them
        public long Unkept; // acked deltas given up past MaxKept
        // The last heartbeat's breakdown less the deltas accepted since (the platform's rule):
        // what a fair crash saga would credit to players now.
        public Counts Reported = new Counts();
        public readonly long MaxPending;
        public readonly int MaxPlayers;
        public readonly int MaxKept;

        public LocalBuffer(long maxPending = Protocol.MaxDeltaAmount, int maxPlayers = DefaultMaxPlayers, int maxKept = DefaultMaxKept)
        {
            MaxPending = Math.Min(maxPending, Protocol.MaxDeltaAmount);
            MaxPlayers = maxPlayers;
            MaxKept = maxKept;
        }

        /// <summary>Add one hit (O(1)); BufferFullException past the bound, nothing added then.</summary>
        public void Add(long amount, string player = null)
        {
            long held = Pending + (Inflight != null ? Inflight.Amount : 0);
            if (held + amount > MaxPending)
                throw new BufferFullException("local buffer holds " + held + " damage; the bound is " + MaxPending + " (the platform is not taking deltas)", held);
            if (player == null) Unattributed += amount;
            else if (Players.Contains(player)) Players.Add(player, amount);
            else
            {
                if (Players.Count >= MaxPlayers)
                    throw new BufferFullException("local buffer holds " + Players.Count + " players; the bound is " + MaxPlayers, Pending);
                Players.Set(player, amount);
            }
            Pending += amount;
        }

        /// <summary>Everything held: pending, the in-flight delta and the queued re-sends.</summary>
        public long Unacked { get { return Waiting + (Inflight != null ? Inflight.Amount : 0); } }

        /// <summary>Damage in no in-flight delta (what a heartbeat reports as `pending`).</summary>
        public long Waiting
        {
            get
            {
                long total = Pending;
                foreach (var d in Queued) total += d.Amount;
                return Math.Min(total, Protocol.MaxDeltaAmount);
            }
        }

        /// <summary>Who holds what a heartbeat reports, kept apart: who holds `waiting` (pending
        /// players first, then the queued re-sends') and who the in-flight delta carries (its
        /// own breakdown; the platform counts it only while that delta is unaccepted). Call it
        /// to send a heartbeat: their merge is remembered as Reported.</summary>
        public Counts HeldParts(out Counts flight)
        {
            var part = new Counts();
            foreach (var kv in Players)
            {
                if (part.Count >= Protocol.MaxBreakdownEntries) break;
                part.Set(kv.Key, kv.Value);
            }
            foreach (var delta in Queued)
            {
                foreach (var kv in delta.Breakdown)
                {
                    if (part.Contains(kv.Key)) part.Add(kv.Key, kv.Value);
                    else if (part.Count < Protocol.MaxBreakdownEntries) part.Set(kv.Key, kv.Value);
                }
            }
            Counts held = Fit(part, Waiting);
            flight = Inflight != null ? new Counts(Inflight.Breakdown) : new Counts();
            var reported = new Counts(held);
            foreach (var kv in flight) reported.Add(kv.Key, kv.Value);
            Reported = reported;
            return held;
        }

        private static Counts Fit(Counts breakdown, long limit)
        {
            var outp = new Counts();
            long total = 0;
            foreach (var kv in breakdown)
            {
                if (total >= limit) break;
                long part = Math.Min(kv.Value, limit - total);
                if (part > 0)
                {
                    outp.Set(kv.Key, part);
                    total += part;
                }
            }
            return outp;
        }

        private void Unreport(Counts breakdown)
        {
            if (Reported.Count == 0) return;
            foreach (var kv in breakdown)
            {
                long left = Reported.Get(kv.Key) - kv.Value;
                if (left > 0) Reported.Set(kv.Key, left);
                else Reported.Remove(kv.Key);
            }
        }

        /// <summary>The delta to send now: the in-flight one again, else a new one (or null).</summary>
        public Delta Take()
        {
            if (Inflight != null) return Inflight;
            if (Pending <= 0) return null;
            Counts breakdown;
            if (Players.Count <= Protocol.MaxBreakdownEntries)
            {
                breakdown = Players;
                Players = new Counts();
            }
            else
            {
                breakdown = new Counts();
                foreach (var kv in Players)
                {
                    if (breakdown.Count >= Protocol.MaxBreakdownEntries) break;
                    breakdown.Set(kv.Key, kv.Value);
                }
                foreach (var kv in breakdown) Players.Remove(kv.Key);
            }
            long amount = Unattributed + breakdown.Sum();
            Unattributed = 0;
            Pending -= amount;
            Inflight = new Delta(NextSeq, amount, breakdown);
            NextSeq += 1;
            return Inflight;
        }

        /// <summary>Mark the in-flight delta accepted if <paramref name="seq"/> is its seq (or later).</summary>
        public bool Acked(long seq)
        {
            if (Inflight == null || seq < Inflight.Seq) return false;
            Unreport(Inflight.Breakdown);
            if (Keeps)
            {
                Kept.Add(Inflight);
                if (Kept.Count > MaxKept)
                {
                    Unkept += 1;
                    Kept.RemoveAt(0);
                }
            }
            if (Queued.Count > 0)
            {
                Inflight = Queued[0];
                Queued.RemoveAt(0);
            }
            else Inflight = null;
            return true;
        }

        /// <summary>A heartbeat's `last_seq` below kept seqs (a rollback): queue them for a re-send now.</summary>
        public bool Behind(long lastSeq)
        {
            if (Kept.Count > 0 && Kept[Kept.Count - 1].Seq > lastSeq)
            {
                long before = Replayed;
                Realign(lastSeq);
                return Replayed > before;
            }
            return false;
        }

        /// <summary>The platform holds every seq up to <paramref name="seq"/> durably: stop keeping those.</summary>
        public void Durable(long seq)
        {
            Keeps = true;
            if (Kept.Count > 0 && Kept[0].Seq <= seq) Kept.RemoveAll(d => d.Seq <= seq);
        }

        /// <summary>The platform's last seq is behind ours: re-send the kept deltas after it under
        /// their own seqs (a rollback), or renumber the in-flight one (a reset).</summary>
        public void Realign(long lastSeq)
        {
            var replay = Kept.FindAll(d => d.Seq > lastSeq);
            if (replay.Count > 0)
            {
                if (replay[0].Seq == lastSeq + 1)
                {
                    Kept.RemoveAll(d => d.Seq > lastSeq);
                    var chain = new List<Delta>(replay);
                    if (Inflight != null) chain.Add(Inflight);
                    chain.AddRange(Queued);
                    Inflight = chain[0];
                    chain.RemoveAt(0);
                    Queued = chain;
                    Replayed += replay.Count;
                }
                // else behind its own archive: the platform's restore brings it forward
                return;
            }
            if (Inflight != null)
            {
                if (lastSeq >= Inflight.Seq) Inflight = null; // it had landed: only the ack was lost
                else
                {
                    Inflight = new Delta(lastSeq + 1, Inflight.Amount, Inflight.Breakdown);
                    NextSeq = lastSeq + 2;
                    return;
                }
            }
            NextSeq = lastSeq + 1;
        }

        /// <summary>Apply a fence's settlement and restart numbering; what remains held.
        /// <paramref name="credited"/> is who a fair settlement credited (the `fenced` error
        /// reports it); without it the buffer assumes what it last reported.</summary>
        public long Fenced(long lastSeq, long settled, Counts credited = null)
        {
            if (Inflight != null)
            {
                if (Inflight.Seq <= lastSeq) Unreport(Inflight.Breakdown); // accepted before the fence
                else BackToPending(Inflight); // never accepted: it goes out under the new epoch
                Inflight = null;
            }
            foreach (var delta in Queued) BackToPending(delta);
            Queued = new List<Delta>();
            Drop(settled, credited ?? Reported); // the credited players' damage goes first
            Reported = new Counts();
            Kept = new List<Delta>();
            NextSeq = 1;
            return Pending;
        }

        /// <summary>Give up everything held (the boss is over); how much.</summary>
        public long DropAll()
        {
            long amount = Unacked;
            long inDeltas = Inflight != null ? Inflight.Amount : 0;
            foreach (var d in Queued) inDeltas += d.Amount;
            Inflight = null;
            Queued = new List<Delta>();
            Kept = new List<Delta>();
            Drop(Pending, null);
            Dropped += inDeltas; // the in-flight delta and the queued re-sends are given up too
            Reported = new Counts();
            return amount;
        }

        private void BackToPending(Delta delta)
        {
            Unattributed += delta.Amount - delta.Breakdown.Sum();
            foreach (var kv in delta.Breakdown) Players.Add(kv.Key, kv.Value);
            Pending += delta.Amount;
        }

        private void Drop(long amount, Counts first)
        {
            long left = Math.Max(0, Math.Min(amount, Pending));
            Dropped += left;
            Pending -= left;
            if (first != null)
            {
                foreach (var kv in first)
                {
                    if (left <= 0) break;
                    left -= TakeFrom(kv.Key, Math.Min(left, kv.Value));
                }
            }
            long fromUnattributed = Math.Min(left, Unattributed);
            Unattributed -= fromUnattributed;
            left -= fromUnattributed;
            var names = new List<string>();
            foreach (var kv in Players) names.Add(kv.Key);
            foreach (string player in names)
            {
                if (left <= 0) break;
                left -= TakeFrom(player, left);
            }
        }

        private long TakeFrom(string player, long most)
        {
            long have = Players.Get(player);
            long take = Math.Min(most, have);
            if (take <= 0) return 0;
            if (have - take == 0) Players.Remove(player);
            else Players.Set(player, have - take);
            return take;
        }
    }
}
