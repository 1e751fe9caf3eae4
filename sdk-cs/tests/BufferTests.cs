// The buffer's exactly-once bookkeeping (the rules of sdk/worldboss_sdk/buffer.py).
namespace WorldBoss.Tests
{
    public static class BufferTests
    {
        public static void TestSameSeqUntilAcked()
        {
            var b = new LocalBuffer();
            b.Add(7, "p0");
            b.Add(3);
            Delta d = b.Take();
            Assert.Equal(1L, d.Seq, "first seq");
            Assert.Equal(10L, d.Amount, "amount");
            Assert.Equal(7L, d.Breakdown.Get("p0"), "breakdown");
            b.Add(5, "p1");
            Assert.True(ReferenceEquals(d, b.Take()), "the in-flight delta again");
            Assert.True(!b.Acked(0), "an older seq acks nothing");
            Assert.True(b.Acked(1), "acked");
            Delta next = b.Take();
            Assert.Equal(2L, next.Seq, "next seq");
            Assert.Equal(5L, next.Amount, "next amount");
            Assert.True(b.Acked(2), "acked");
            Assert.Equal(0L, b.Unacked, "nothing held");
            Assert.True(b.Take() == null, "nothing to send");
        }

        public static void TestBoundRefusesNeverDrops()
        {
            var b = new LocalBuffer(maxPending: 10, maxPlayers: 1);
            b.Add(6, "a");
            var err = Assert.Throws<BufferFullException>(() => b.Add(5), "past max_pending");
            Assert.Equal(6L, err.Pending, "what it held");
            Assert.Throws<BufferFullException>(() => b.Add(1, "b"), "past max_players");
            Assert.Equal(6L, b.Unacked, "nothing added");
        }

        public static void TestFencedDropsSettledCreditedPlayersFirst()
        {
            var b = new LocalBuffer();
            b.Add(100, "a");
            b.Add(50, "b");
            b.Add(20);
            Delta d = b.Take(); // seq 1, 170, never accepted
            Assert.Equal(170L, d.Amount, "in flight");
            var credited = new Counts();
            credited.Set("b", 50);
            long left = b.Fenced(0, 80, credited);
            Assert.Equal(90L, left, "what remains held");
            Assert.Equal(80L, b.Dropped, "dropped exactly settled");
            Assert.Equal(0L, b.Players.Get("b"), "the credited player's damage went first");
            Assert.Equal(90L, b.Players.Get("a") + b.Unattributed, "the rest");
            Assert.Equal(1L, b.NextSeq, "a new epoch numbers from 1");
        }

        public static void TestFencedAcceptedInflightIsNotHeldAgain()
        {
            var b = new LocalBuffer();
            b.Add(40, "a");
            b.Take(); // seq 1, accepted before the fence (last_seq 1)
            b.Add(10, "a");
            long left = b.Fenced(1, 0);
            Assert.Equal(10L, left, "only the pending part remains");
            Assert.True(b.Inflight == null, "no in-flight delta");
        }

        public static void TestRollbackReSendsKeptDeltasUnderTheirSeqs()
        {
            var b = new LocalBuffer { Keeps = true };
            for (int i = 1; i <= 3; i++)
            {
                b.Add(10 * i);
                b.Take();
                Assert.True(b.Acked(i), "acked " + i);
            }
            Assert.Equal(3, b.Kept.Count, "kept until durable");
            b.Durable(1);
            Assert.Equal(2, b.Kept.Count, "seq 1 is durable");
            Assert.True(b.Behind(1), "the authority is back at seq 1");
            Assert.Equal(2L, b.Inflight.Seq, "seq 2 again");
            Assert.Equal(20L, b.Inflight.Amount, "with its amount");
            Assert.Equal(1, b.Queued.Count, "then seq 3");
            Assert.True(b.Acked(2) && b.Inflight.Seq == 3, "seq 3 next");
            Assert.True(b.Acked(3) && b.Inflight == null, "all re-sent");
            Assert.Equal(2L, b.Replayed, "two re-sent");
            Assert.Equal(4L, b.Take() == null ? b.NextSeq : -1, "numbering goes on after");
        }

        public static void TestBehindItsArchiveWaitsForTheRestore()
        {
            var b = new LocalBuffer { Keeps = true };
            for (int i = 1; i <= 3; i++)
            {
                b.Add(5);
                b.Take();
                b.Acked(i);
            }
            b.Durable(2); // kept: seq 3 only
            Assert.True(!b.Behind(1), "seq 2 is no longer kept: no renumbering");
            Assert.True(b.Inflight == null, "nothing re-sent");
        }

        public static void TestResetRenumbersTheInflightDelta()
        {
            var b = new LocalBuffer();
            b.Add(9);
            b.Take();
            b.Acked(1);
            b.Add(4);
            b.Take(); // seq 2
            b.Realign(0); // the boss was reset: its dedupe state is gone
            Assert.Equal(1L, b.Inflight.Seq, "re-sent as last_seq + 1");
            Assert.Equal(2L, b.NextSeq, "numbering from there");
        }

        public static void TestHeldPartsKeepTheInflightDeltaApart()
        {
            var b = new LocalBuffer();
            b.Add(30, "a");
            b.Take();
            b.Add(5, "b");
            b.Add(2);
            Counts flight;
            Counts held = b.HeldParts(out flight);
            Assert.Equal(5L, held.Get("b"), "pending players");
            Assert.Equal(1, held.Count, "only them");
            Assert.Equal(30L, flight.Get("a"), "the in-flight delta's players");
            Assert.Equal(7L, b.Waiting, "waiting");
            Assert.Equal(35L, b.Reported.Sum(), "reported is their merge");
            b.Acked(1);
            Assert.Equal(5L, b.Reported.Sum(), "an accepted delta is no longer reported");
        }

        public static void TestDropAll()
        {
            var b = new LocalBuffer();
            b.Add(3, "a");
            b.Take();
            b.Add(4);
            Assert.Equal(7L, b.DropAll(), "everything held");
            Assert.Equal(0L, b.Unacked, "nothing left");
            Assert.Equal(7L, b.Dropped, "the in-flight delta counted as dropped too");
        }
    }
}
