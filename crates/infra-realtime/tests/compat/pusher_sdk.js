// Drives the official `pusher` Node SDK for infra-realtime's compatibility test.
// Usage: node pusher_sdk.js <port> <webhook-body> <webhook-signature> <master-key-base64> <sealed-by-us>
// Prints one JSON object with what the SDK produced and how our server answered it.
const Pusher = require("pusher");
// The NaCl implementation the SDK itself encrypts with (a dependency of `pusher`).
const nacl = require("tweetnacl");

const [port, webhookBody, webhookSignature, masterKeyBase64, sealedByUs] = process.argv.slice(2);
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
  // Encrypted channels: the SDK's shared secret, an event it encrypts (sent to our
  // stand-in), and an event our client sealed, opened with the SDK's secret.
  const encrypted = new Pusher({
    appId: "3",
    key: "278d425bdf160c739803",
    secret: "7ad3773142a6692b25b8",
    host: "127.0.0.1",
    port: Number(port),
    useTLS: false,
    encryptionMasterKeyBase64: masterKeyBase64,
  });
  out.encrypted_auth = encrypted.authorizeChannel("1234.1234", "private-encrypted-calendar-7");
  const sealedTrigger = await encrypted.trigger("private-encrypted-calendar-7", "meeting.moved", { id: 9 });
  out.encrypted_trigger = sealedTrigger.status;
  const ours = JSON.parse(sealedByUs);
  const opened = nacl.secretbox.open(
    Buffer.from(ours.ciphertext, "base64"),
    Buffer.from(ours.nonce, "base64"),
    Buffer.from(out.encrypted_auth.shared_secret, "base64")
  );
  out.opened_ours = opened === null ? null : Buffer.from(opened).toString("utf8");
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.log(JSON.stringify({ error: String(err && (err.body || err.message || err)) }));
  process.exit(1);
});
