// Cache channels across a cluster: the official `pusher` SDK triggers an event on a cache
// channel through node 1 while node 2 is not running yet; a pusher-js client on node 2,
// started afterwards, subscribes and gets that event; a cache channel nothing was sent on
// answers `pusher:cache_miss`.
// Usage: node pusher_js_cache_channel.js <port-of-node-1> <port-of-node-2>
// Prints `STEP start-node-2` and waits for a line on stdin; prints `RESULT <json>` at the end.
const Pusher = require("pusher");
const { APP_ID, KEY, SECRET, PATIENCE, step, within, connected, ...common } = require("./pusher_js_common");

const [port1, port2] = process.argv.slice(2).map(Number);
const sdk = new Pusher({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: port1, useTLS: false });

// The first of `events` that `channel` hears, with its name.
function first(channel, events) {
  return within(PATIENCE, `one of ${events}`, new Promise((resolve) => {
    for (const event of events) channel.bind(event, (data) => resolve({ event, data }));
  }));
}

async function main() {
  const out = {};
  const triggered = await sdk.trigger("cache-news", "headline", { n: 1 });
  out.trigger_status = triggered.status;

  await step("start-node-2");
  const b = common.client(sdk, "b", port2);
  await connected(b);
  out.cached = await first(b.subscribe("cache-news"), ["headline", "pusher:cache_miss"]);
  out.empty = await first(b.subscribe("cache-empty"), ["headline", "pusher:cache_miss"]);
  b.disconnect();
  console.log(`RESULT ${JSON.stringify(out)}`);
  process.exit(0);
}

main().catch((err) => {
  console.log(`RESULT ${JSON.stringify({ error: String(err) })}`);
  process.exit(1);
});
