// Serves one function with the official `inngest` SDK's own Node handler, so tests can check
// that our signatures pass its verification and that its sync matches ours.
// Usage: node inngest_serve.js <signing key> <Inngest API base URL>
// Prints {"port": N} once listening; runs until killed.
const http = require("node:http");
const { Inngest } = require("inngest");
const { serve } = require("inngest/node");

const [signingKey, apiBaseUrl] = process.argv.slice(2);
const inngest = new Inngest({
  id: "calendar-agent",
  signingKey,
  baseUrl: apiBaseUrl,
  isDev: false,
});
const syncCalendar = inngest.createFunction(
  { id: "sync-calendar", triggers: { event: "calendar/sync.requested" } },
  async ({ event }) => ({ synced: event.data.userId }),
);
const server = http.createServer(serve({ client: inngest, functions: [syncCalendar] }));
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
