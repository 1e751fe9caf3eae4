// A toy game server acting as a shard (docs/sdk.md, "C# SDK"):
//   mono bin/GameServer.exe <url> <shard> <token> [boss ragnaros] [seconds 30] [players 40]
// Players swing every 20 ms; Hit only adds to memory. At the end it flushes, says bye and prints
// one JSON line: {"dealt", "refused", "acked", "flushed", "epoch", "left"}.
using System;
using System.Threading;
using WorldBoss;

public static class GameServer
{
    public static int Main(string[] args)
    {
        string boss = args.Length > 3 ? args[3] : "ragnaros";
        int frames = (args.Length > 4 ? int.Parse(args[4]) : 30) * 50, players = args.Length > 5 ? int.Parse(args[5]) : 40;
        var client = new ShardClient(args[0], new ShardClientOptions { Shard = args[1], Token = args[2] });
        client.Fenced += (slug, settled) => Console.Error.WriteLine("fenced on " + slug + ": " + settled + " settled");
        client.Start(); // returns at once; connects (and reconnects) in the background
        var random = new Random();
        long dealt = 0, refused = 0;
        for (int frame = 0; frame < frames; frame++) // a 50 Hz game loop
        {
            for (int p = 0; p < players; p++)
            {
                long damage = 50 + random.Next(100);
                try { client.Hit(boss, damage, "player-" + p); dealt += damage; } // memory only: never waits
                catch (BufferFullException) { refused += damage; } // the platform has been away too long
            }
            client.Dispatch(); // the queued events, raised on this thread
            Thread.Sleep(20);
        }
        bool flushed = client.Stop(); // flush (bounded), then bye: retired cleanly, not crashed
        var summary = new JsonObject();
        summary["dealt"] = dealt;
        summary["refused"] = refused;
        summary["acked"] = client.Stats.Acked;
        summary["flushed"] = flushed;
        summary["epoch"] = client.Epoch;
        summary["left"] = client.LeftFrame != null;
        Console.WriteLine(Json.Write(summary));
        return 0;
    }
}
