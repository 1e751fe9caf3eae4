// A toy game server acting as a shard, on the installed package (npm install worldboss-sdk-0.2.0.tgz):
//   node game-server.mjs --url ws://127.0.0.1:8000 --shard eu-1 --token=<TOKEN> --boss <slug> --players 40 --seconds 5
// Players swing every 20 ms; hit() only adds to memory. At the end it flushes, says bye and
// prints one JSON line: {"dealt", "refused", "acked", "flushed", "epoch", "left", "truth"}.
import { parseArgs } from "node:util";
import { BufferFull, ShardClient } from "worldboss-sdk";

const { values: o } = parseArgs({ options: { url: { type: "string" }, shard: { type: "string" }, token: { type: "string" },
  boss: { type: "string" }, players: { type: "string", default: "40" }, seconds: { type: "string", default: "5" } } });
const client = new ShardClient(o.url, { shard: o.shard, token: o.token, tickMs: 50 });
client.start();
client.watch(o.boss); // live state over /ws/bosses/<slug>/: client.predictedHp(boss)
let dealt = 0, refused = 0;
const game = setInterval(() => {
  for (let p = 0; p < Number(o.players); p++) {
    const damage = 50 + Math.floor(Math.random() * 100);
    try { client.hit(o.boss, damage, `player-${p}`); dealt += damage; }
    catch (err) { if (err instanceof BufferFull) refused += damage; else throw err; }
  }
}, 20);
await new Promise((resolve) => setTimeout(resolve, Number(o.seconds) * 1000));
clearInterval(game);
const flushed = await client.stop();  // flush (bounded), then bye: retired cleanly, not crashed
console.log(JSON.stringify({ dealt, refused, acked: client.stats.acked, flushed, epoch: client.epoch, left: client.left !== null,
  truth: client.state(o.boss)?.hp ?? null }));
