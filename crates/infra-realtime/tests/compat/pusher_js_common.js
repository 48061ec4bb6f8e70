// What the pusher-js compatibility scripts share: the test app's credentials, the stdio
// handshake with the Rust test, and pusher-js clients whose channel auth the official `pusher`
// SDK signs in-process (as an app's auth endpoint would).
const PusherJs = require("pusher-js");
const readline = require("readline");

const APP_ID = "3";
const KEY = "278d425bdf160c739803";
const SECRET = "7ad3773142a6692b25b8";
// Only there to avoid hangs; nothing here measures time.
const PATIENCE = 10000;

// Prints `STEP <name>` and resolves when the Rust test answers with a line on stdin.
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", () => waiting.length && waiting.shift()());
function step(name) {
  console.log(`STEP ${name}`);
  return new Promise((resolve) => waiting.push(resolve));
}

function within(ms, what, promise) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}

// A pusher-js client of user `userId` connected to the server on `port`.
function client(sdk, userId, port) {
  return new PusherJs(KEY, {
    cluster: "local",
    wsHost: "127.0.0.1",
    wsPort: port,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        const presence = channelName.startsWith("presence-")
          ? { user_id: userId, user_info: { name: `user ${userId}` } }
          : undefined;
        callback(null, sdk.authorizeChannel(socketId, channelName, presence));
      },
    },
  });
}

function subscribed(pusher, name) {
  return within(PATIENCE, `subscribe ${name}`, new Promise((resolve, reject) => {
    const channel = pusher.subscribe(name);
    channel.bind("pusher:subscription_succeeded", (data) => resolve({ channel, data }));
    channel.bind("pusher:subscription_error", (err) => reject(new Error(`${name}: ${JSON.stringify(err)}`)));
  }));
}

// The next `event` on `channel`, with its metadata.
function next(channel, event, patience = PATIENCE) {
  return within(patience, `event ${event}`, new Promise((resolve) => {
    const handler = (data, metadata) => {
      channel.unbind(event, handler);
      resolve({ data, metadata });
    };
    channel.bind(event, handler);
  }));
}

function connected(pusher) {
  return within(PATIENCE, "connected", new Promise((resolve) => {
    if (pusher.connection.state === "connected") return resolve();
    pusher.connection.bind("connected", () => resolve());
  }));
}

module.exports = { APP_ID, KEY, SECRET, PATIENCE, step, within, client, subscribed, next, connected };
