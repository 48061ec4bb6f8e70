// Drives two official pusher-js clients against a two-node infra-realtime cluster: client `a`
// on node 1, client `b` on node 2, and the official `pusher` SDK triggering on node 1.
// Usage: node pusher_js_cluster.js <port-of-node-1> <port-of-node-2>
// Talks to the Rust test over stdio: prints `STEP <name>` and waits for a line on stdin before
// going on; prints `RESULT <json>` at the end.
const Pusher = require("pusher");
const { APP_ID, KEY, SECRET, PATIENCE, step, within, subscribed, next, connected, ...common } =
  require("./pusher_js_common");

const [port1, port2] = process.argv.slice(2).map(Number);
const sdk = new Pusher({
  appId: APP_ID,
  key: KEY,
  secret: SECRET,
  host: "127.0.0.1",
  port: port1,
  useTLS: false,
});
const client = (userId, port) => common.client(sdk, userId, port);

function memberIds(members) {
  const ids = [];
  members.each((member) => ids.push(member.id));
  return ids.sort();
}

async function main() {
  const out = {};
  const a = client("a", port1);
  const b = client("b", port2);
  await connected(a);
  await connected(b);

  // Presence over two nodes: each sees the other.
  const presenceA = await subscribed(a, "presence-room");
  out.a_members_at_join = memberIds(presenceA.data);
  const memberAdded = next(presenceA.channel, "pusher:member_added");
  const presenceB = await subscribed(b, "presence-room");
  out.b_me = presenceB.data.me.id;
  out.b_count = presenceB.data.count;
  out.b_members = memberIds(presenceB.data);
  const added = (await memberAdded).data;
  out.a_member_added = { id: added.id, info: added.info };
  out.a_count = presenceA.channel.members.count;
  out.a_members = memberIds(presenceA.channel.members);

  // An event the official SDK triggers on node 1 reaches the client on node 2.
  const fromSdk = next(presenceB.channel, "from-sdk");
  const sdkResponse = await sdk.trigger("presence-room", "from-sdk", { n: 1 });
  out.sdk_status = sdkResponse.status;
  out.from_sdk_on_2 = (await fromSdk).data;

  // A client event sent by a on node 1 reaches b on node 2, with a's user id; not echoed to a.
  let echoed = false;
  presenceA.channel.bind("client-wave", () => { echoed = true; });
  const wave = next(presenceB.channel, "client-wave");
  out.client_event_sent = presenceA.channel.trigger("client-wave", { hi: "from a" });
  const waved = await wave;
  out.client_event = waved.data;
  out.client_event_user = waved.metadata.user_id;

  // The Rust side asks node 2's HTTP API about the channel.
  await step("channels");
  out.client_event_echoed = echoed;

  // Node 2 dies without a word: a hears b leave once node 2's lease runs out.
  const memberRemoved = next(presenceA.channel, "pusher:member_removed", PATIENCE * 3);
  await step("kill");
  out.a_member_removed = (await memberRemoved).data.id;
  out.a_count_after = presenceA.channel.members.count;
  out.a_members_after = memberIds(presenceA.channel.members);
  // b would otherwise keep trying to reach the dead node.
  b.disconnect();

  // Node 1 still serves a.
  const after = next(presenceA.channel, "after-kill");
  await sdk.trigger("presence-room", "after-kill", { n: 2 });
  out.after_kill = (await after).data;
  // The Rust side asks node 1's HTTP API who is left.
  await step("survivor");

  a.disconnect();
  console.log(`RESULT ${JSON.stringify(out)}`);
  process.exit(0);
}

main().catch((err) => {
  console.log(`RESULT ${JSON.stringify({ error: String((err && (err.stack || err.message)) || err) })}`);
  process.exit(1);
});
