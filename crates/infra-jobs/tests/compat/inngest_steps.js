// Serves a step function with the official `inngest` SDK's own Node handler, in dev mode (no
// signatures), so a test can send it the executor's call requests and compare its replies
// with ours for the same function written with infra-jobs (tests/steps_inngest.rs).
// Usage: node inngest_steps.js <event API base URL>
// Prints {"port": N} once listening; runs until killed.
const http = require("node:http");
const { Inngest, referenceFunction } = require("inngest");
const { serve } = require("inngest/node");

const [eventApi] = process.argv.slice(2);
const inngest = new Inngest({ id: "calendar-agent", isDev: true, baseUrl: eventApi, eventKey: "harness" });
const steps = inngest.createFunction(
  { id: "steps", triggers: { event: "t/steps" }, retries: 2 },
  async ({ event, step }) => {
    const fetched = await step.run("fetch", () => ({ n: event.data.n }));
    const looped = [];
    for (let i = 0; i < 2; i++) {
      looped.push(await step.run("loop", () => i * 10));
    }
    await step.sleep("nap", "5s");
    await step.sleepUntil("until", new Date(1900000000000));
    const paid = await step.waitForEvent("paid", { event: "t/paid", timeout: "1h", match: "data.userId" });
    const done = await step.waitForEvent("done", { event: "t/done", timeout: "30m", if: "async.data.ok == true" });
    const invoked = await step.invoke("call", {
      function: referenceFunction({ functionId: "other" }),
      data: { x: 1 },
      timeout: "1m",
    });
    const sent = await step.sendEvent("notify", [{ name: "t/notified", data: { n: event.data.n }, id: "fixed-id" }]);
    const flaky = await step.run("flaky", () => {
      if (event.data.fail) throw new Error("boom");
      return 1;
    });
    return { fetched, looped, paid: paid ? paid.data : null, done, invoked, sent, flaky };
  },
);
const server = http.createServer(serve({ client: inngest, functions: [steps] }));
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
