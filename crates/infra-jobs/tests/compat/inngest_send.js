// Drives the official `inngest` SDK against our ingestion route.
// Usage: node inngest_send.js <event API base URL> <event key> <wrong key>
// Prints one JSON line: the ids of each send and the error a wrong key gets.
const { Inngest } = require("inngest");

async function main() {
  const [baseUrl, eventKey, wrongKey] = process.argv.slice(2);
  const client = (key) =>
    new Inngest({ id: "infra-compat", eventKey: key, baseUrl, isDev: false });
  const inngest = client(eventKey);

  const single = await inngest.send({
    name: "calendar/sync.requested",
    data: { userId: "u1", calendarId: "c1", workspaceId: "w1" },
  });
  const batch = await inngest.send([
    {
      name: "email/send.requested",
      data: { to: "a@example.com", subject: "Hi", template: "welcome", data: {} },
    },
    {
      name: "calendar/sync.requested",
      data: { userId: "u2", calendarId: "c2", workspaceId: "w2" },
      id: "dedup-u2",
    },
  ]);

  let wrongKeyError = null;
  try {
    await client(wrongKey).send({ name: "calendar/sync.requested", data: {} });
  } catch (err) {
    wrongKeyError = String(err && err.message ? err.message : err);
  }
  console.log(JSON.stringify({ single: single.ids, batch: batch.ids, wrongKeyError }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
