// Drives the official `pusher` Node SDK for infra-realtime's compatibility test.
// Usage: node pusher_sdk.js <port> <webhook-body> <webhook-signature>
// Prints one JSON object with what the SDK produced and how our server answered it.
const Pusher = require("pusher");

const [port, webhookBody, webhookSignature] = process.argv.slice(2);
const pusher = new Pusher({
  appId: "3",
  key: "278d425bdf160c739803",
  secret: "7ad3773142a6692b25b8",
  host: "127.0.0.1",
  port: Number(port),
  useTLS: false,
});

async function main() {
  const out = {};
  const trigger = await pusher.trigger(["private-a", "b"], "meeting.moved", { id: 9 });
  out.trigger = trigger.status;
  const batch = await pusher.triggerBatch([{ channel: "a", name: "e", data: { n: 1 } }]);
  out.batch = batch.status;
  const channels = await pusher.get({ path: "/channels", params: { filter_by_prefix: "presence-" } });
  out.channels = channels.status;
  out.private_auth = pusher.authorizeChannel("1234.1234", "private-foobar");
  out.presence_auth = pusher.authorizeChannel("1234.1234", "presence-foobar", {
    user_id: 10,
    user_info: { name: "Mr. Channels" },
  });
  out.user_auth = pusher.authenticateUser("1234.1234", { id: "12345" });
  out.webhook_valid = pusher
    .webhook({
      headers: {
        "x-pusher-key": "278d425bdf160c739803",
        "x-pusher-signature": webhookSignature,
        "content-type": "application/json",
      },
      rawBody: webhookBody,
    })
    .isValid();
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.log(JSON.stringify({ error: String(err && (err.body || err.message || err)) }));
  process.exit(1);
});
