// A player of a platform-hosted shard, on the installed package. The ticket is signed here for
// the demo's sake; a real game signs it on its backend and hands it to the client:
//   node player.mjs --url ws://127.0.0.1:8000 --shard web-1 --boss <slug> --key-id game-1 --secret <s> --attacks 5
// Prints one JSON line: {"player", "attacks", "damage", "refused"}.
import { parseArgs } from "node:util";
import { HpPrediction, PlayerClient, playerTicketSign } from "worldboss-sdk";

const { values: o } = parseArgs({ options: { url: { type: "string" }, shard: { type: "string" }, boss: { type: "string" },
  "key-id": { type: "string" }, secret: { type: "string" }, attacks: { type: "string", default: "5" } } });
const ticket = playerTicketSign({ secret: o.secret, keyId: o["key-id"], player: "ts-hero", ttlS: 600, shard: o.shard });
const player = new PlayerClient(o.url, { shard: o.shard, ticket });
const prediction = new HpPrediction();
player.onFrame = (frame) => { if (frame.type === "state") prediction.state(frame); };
const welcome = await player.connect();
let damage = 0, refused = 0;
for (let i = 0; i < Number(o.attacks); i++) {
  const result = await player.attack(o.boss);
  if (result.ok) { damage += result.damage; prediction.hit(result.damage); } else refused += 1;
}
player.close();
console.log(JSON.stringify({ player: welcome.player, attacks: Number(o.attacks), damage, refused }));
