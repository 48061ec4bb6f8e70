// A webhook receiver that checks every delivery with the official `pusher` SDK's `webhook()`.
// Usage: node webhook_receiver.js
// Prints `LISTENING <port>`, then for each POST to /hooks `EVENTS <json>` (the SDK's
// `getEvents()` of a delivery it found valid, answered 200) or `INVALID` (answered 401); a POST
// to /refuse is answered 503 and printed as `REFUSED`, to make the server retry and give up.
const http = require("http");
const Pusher = require("pusher");
const { APP_ID, KEY, SECRET } = require("./pusher_js_common");

const sdk = new Pusher({ appId: APP_ID, key: KEY, secret: SECRET });

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    if (req.url === "/refuse") {
      console.log("REFUSED");
      res.writeHead(503).end();
      return;
    }
    const webhook = sdk.webhook({ headers: req.headers, rawBody: Buffer.concat(chunks).toString("utf8") });
    if (!webhook.isValid()) {
      console.log("INVALID");
      res.writeHead(401).end();
      return;
    }
    console.log(`EVENTS ${JSON.stringify(webhook.getEvents())}`);
    res.writeHead(200).end();
  });
});
server.listen(0, "127.0.0.1", () => console.log(`LISTENING ${server.address().port}`));
// Ends with the test that started it.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
