// Drives the official pusher-js client (and the `pusher` server SDK) against infra-realtime's
// server. Usage: node pusher_js.js <port>
// Talks to the Rust test over stdio: prints `STEP <name>` and waits for a line on stdin before
// going on; prints `RESULT <json>` at the end.
const Pusher = require("pusher");
const { APP_ID, KEY, SECRET, PATIENCE, step, within, subscribed, next, connected, ...common } =
  require("./pusher_js_common");

const port = Number(process.argv[2]);
const MASTER_KEY = Buffer.alloc(32, 7).toString("base64");
const sdk = new Pusher({
  appId: APP_ID,
  key: KEY,
  secret: SECRET,
  host: "127.0.0.1",
  port,
  useTLS: false,
  encryptionMasterKeyBase64: MASTER_KEY,
});
const client = (userId) => common.client(sdk, userId, port);

async function main() {
  const out = {};
  const a = client("a");
  const b = client("b");
  await connected(a);
  await connected(b);
  out.socket_id = a.connection.socket_id;

  const news = (await subscribed(a, "news")).channel;
  const roomA = (await subscribed(a, "private-room")).channel;
  const roomB = (await subscribed(b, "private-room")).channel;
  const presenceA = await subscribed(a, "presence-room");
  const memberAdded = next(presenceA.channel, "pusher:member_added");
  const presenceB = await subscribed(b, "presence-room");
  out.presence_me = presenceB.data.me.id;
  out.presence_count = presenceB.data.count;
  out.member_added = (await memberAdded).data.id;
  const secret = (await subscribed(a, "private-encrypted-room")).channel;

  // Events from the official SDK.
  const fromSdk = next(news, "from-sdk");
  await sdk.trigger("news", "from-sdk", { n: 1 });
  out.from_sdk = (await fromSdk).data;

  // Events from our PusherClient, triggered by the Rust side.
  const fromRustA = next(roomA, "from-rust");
  const fromRustB = next(roomB, "from-rust");
  await step("trigger");
  out.from_rust = [(await fromRustA).data, (await fromRustB).data];

  // Client events: delivered to the others, not echoed.
  let echoed = false;
  roomB.bind("client-typing", () => { echoed = true; });
  const typing = next(roomA, "client-typing");
  roomB.trigger("client-typing", { typing: true });
  out.client_event = (await typing).data;
  const presenceTyping = next(presenceA.channel, "client-wave");
  presenceB.channel.trigger("client-wave", { hi: 1 });
  out.client_event_user = (await presenceTyping).metadata.user_id;
  out.client_event_echoed = echoed;

  // An encrypted channel: the SDK encrypts, pusher-js decrypts with the shared secret.
  const decrypted = next(secret, "secret");
  await sdk.trigger("private-encrypted-room", "secret", { plan: "3pm" });
  out.decrypted = (await decrypted).data;

  // Member removed when b leaves.
  const memberRemoved = next(presenceA.channel, "pusher:member_removed");
  b.disconnect();
  out.member_removed = (await memberRemoved).data.id;

  // The server restarts: pusher-js reconnects, resubscribes, and receives again.
  // pusher-js keeps `subscribed` across a retry, so wait for the next confirmation itself.
  const resubscribed = within(PATIENCE * 2, "resubscribed", new Promise((resolve) => {
    news.bind("pusher:subscription_succeeded", resolve);
  }));
  const lost = within(PATIENCE, "connection lost", new Promise((resolve) => {
    a.connection.bind("state_change", (s) => s.current !== "connected" && resolve(s.current));
  }));
  await step("restart");
  await lost;
  await resubscribed;
  out.reconnected_socket_id = a.connection.socket_id;
  const afterRestart = next(news, "after-restart");
  await sdk.trigger("news", "after-restart", { n: 2 });
  out.after_restart = (await afterRestart).data;

  a.disconnect();
  console.log(`RESULT ${JSON.stringify(out)}`);
  process.exit(0);
}

main().catch((err) => {
  console.log(`RESULT ${JSON.stringify({ error: String((err && (err.stack || err.message)) || err) })}`);
  process.exit(1);
});
