// pusher-js's `pusher.user.watchlist` against a two-node cluster with watchlist events on.
// Watcher `w` (node 1) watches x, y, s1 and s2. y is online before w signs in; x opens a tab on
// each node. s1 (node 1) and s2 (node 2) sign in after x's tabs on their nodes: each node
// handles its users' changes in order, so once w heard them online, both of x's tabs counted.
// Then x closes both tabs. w must hear x online once and offline once.
// Usage: node pusher_js_watchlist.js <port-of-node-1> <port-of-node-2>
// Prints `RESULT <json>` at the end.
const PusherJs = require("pusher-js");
const Pusher = require("pusher");
const { APP_ID, KEY, SECRET, PATIENCE, within, connected } = require("./pusher_js_common");

const [port1, port2] = process.argv.slice(2).map(Number);
const sdk = new Pusher({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: port1, useTLS: false });

// A pusher-js client on `port` that signs in as `id` (watching `watchlist`).
function user(id, port, watchlist) {
  return new PusherJs(KEY, {
    cluster: "local",
    wsHost: "127.0.0.1",
    wsPort: port,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        const data = watchlist ? { id, watchlist } : { id };
        callback(null, sdk.authenticateUser(socketId, data));
      },
    },
  });
}

async function signedIn(pusher) {
  await connected(pusher);
  pusher.signin();
  await within(PATIENCE, "signin", pusher.user.signinDonePromise);
}

async function main() {
  const heard = [];
  const waiters = [];
  const heardOf = (name, id) => heard.some((e) => e.name === name && e.user_ids.includes(id));
  const when = (name, id) => within(PATIENCE, `${name} ${id}`, new Promise((resolve) => {
    if (heardOf(name, id)) resolve();
    else waiters.push({ name, id, resolve });
  }));

  const y = user("y", port2);
  await signedIn(y);

  const w = user("w", port1, ["x", "y", "s1", "s2"]);
  for (const name of ["online", "offline"]) {
    w.user.watchlist.bind(name, (event) => {
      heard.push({ name: event.name, user_ids: event.user_ids });
      for (const waiter of waiters.splice(0)) {
        if (heardOf(waiter.name, waiter.id)) waiter.resolve();
        else waiters.push(waiter);
      }
    });
  }
  await signedIn(w);
  await when("online", "y");

  const x1 = user("x", port1);
  const x2 = user("x", port2);
  await signedIn(x1);
  await signedIn(x2);
  const s1 = user("s1", port1);
  const s2 = user("s2", port2);
  await signedIn(s1);
  await signedIn(s2);
  await when("online", "s1");
  await when("online", "s2");
  await when("online", "x");

  x1.disconnect();
  x2.disconnect();
  await when("offline", "x");
  // s1 leaving after x (same node as x1) is heard only after everything x1 caused.
  s1.disconnect();
  await when("offline", "s1");

  const count = (name, id) => heard.filter((e) => e.name === name && e.user_ids.includes(id)).length;
  const out = {
    x_online: count("online", "x"),
    x_offline: count("offline", "x"),
    y_online: count("online", "y"),
    heard,
  };
  for (const p of [w, y, s2]) p.disconnect();
  console.log(`RESULT ${JSON.stringify(out)}`);
  process.exit(0);
}

main().catch((err) => {
  console.log(`RESULT ${JSON.stringify({ error: String(err) })}`);
  process.exit(1);
});
