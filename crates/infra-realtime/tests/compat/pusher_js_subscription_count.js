// pusher-js's `pusher:subscription_count` binding against a two-node cluster with the
// subscription count setting on: client `a` on node 1 follows the count of channel `room` as
// client `b` on node 2 joins and leaves.
// Usage: node pusher_js_subscription_count.js <port-of-node-1> <port-of-node-2>
// Prints `RESULT <json>` at the end.
const Pusher = require("pusher");
const { APP_ID, KEY, SECRET, PATIENCE, within, connected, ...common } = require("./pusher_js_common");

const [port1, port2] = process.argv.slice(2).map(Number);
const sdk = new Pusher({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: port1, useTLS: false });

// Follows a channel's counts; `reaches(n)` resolves once the latest count is `n`.
function follow(channel) {
  const seen = [];
  const waiters = [];
  channel.bind("pusher:subscription_count", (data) => {
    seen.push(data.subscription_count);
    for (const w of waiters.splice(0)) {
      if (w.n === data.subscription_count) w.resolve();
      else waiters.push(w);
    }
  });
  const reaches = (n) => within(PATIENCE, `subscription count ${n}`, new Promise((resolve) => {
    if (seen[seen.length - 1] === n) resolve();
    else waiters.push({ n, resolve });
  }));
  return { seen, reaches };
}

const progress = {};

async function main() {
  const a = common.client(sdk, "a", port1);
  const b = common.client(sdk, "b", port2);
  await connected(a);
  await connected(b);

  const onA = follow(a.subscribe("room"));
  progress.a = onA.seen;
  await onA.reaches(1);
  const onB = follow(b.subscribe("room"));
  progress.b = onB.seen;
  await onA.reaches(2);
  await onB.reaches(2);
  b.unsubscribe("room");
  await onA.reaches(1);

  const out = { a_counts: onA.seen, b_counts: onB.seen, a_channel_count: a.channel("room").subscriptionCount };
  a.disconnect();
  b.disconnect();
  console.log(`RESULT ${JSON.stringify(out)}`);
  process.exit(0);
}

main().catch((err) => {
  console.log(`RESULT ${JSON.stringify({ error: String(err), ...progress })}`);
  process.exit(1);
});
