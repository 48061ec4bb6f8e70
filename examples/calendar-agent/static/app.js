// The calendar agent's page: sign in as a demo user, join `private-user-{id}` through the
// app's auth endpoint, press Sync, watch started → completed arrive live.
"use strict";

const $ = (id) => document.getElementById(id);
// Per tab, not per browser: two tabs can be two different users.
const session = {
  get token() { return sessionStorage.getItem("token"); },
  set token(v) { sessionStorage.setItem("token", v); },
};

function logEvent(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.dataset.kind = kind;
  li.textContent = text;
  $("events").appendChild(li);
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: {
      "Content-Type": "application/json",
      ...(session.token ? { Authorization: `Bearer ${session.token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = { error: text }; }
  return { status: response.status, json };
}

async function start() {
  const { json: config } = await api("GET", "/api/demo/config");
  for (const user of config.users) {
    const option = document.createElement("option");
    option.value = user.id;
    option.textContent = `${user.email} (#${user.id})`;
    $("user").appendChild(option);
  }
  $("sign-in-button").onclick = async () => {
    const { status, json } = await api("POST", "/api/demo/sign-in", { user_id: Number($("user").value) });
    if (status !== 200) { alert(json.error || status); return; }
    session.token = json.token;
    connect(config, json);
  };
}

function connect(config, me) {
  $("sign-in").hidden = true;
  $("session").hidden = false;
  $("who").textContent = `${me.email} (#${me.user_id})`;
  const channelName = `private-user-${me.user_id}`;
  $("channel").textContent = channelName;

  const pusher = new Pusher(config.pusher.key, {
    cluster: "local",
    wsHost: config.pusher.ws_host || location.hostname,
    wsPort: config.pusher.ws_port || Number(location.port) || 80,
    forceTLS: location.protocol === "https:",
    enabledTransports: ["ws", "wss"],
    disableStats: true,
    channelAuthorization: {
      endpoint: "/api/pusher/auth",
      transport: "ajax",
      headers: { Authorization: `Bearer ${session.token}` },
    },
  });
  window.pusher = pusher;

  const channel = pusher.subscribe(channelName);
  channel.bind("pusher:subscription_succeeded", () => {
    $("subscription").textContent = "subscribed";
    $("subscription").dataset.state = "subscribed";
    $("sync").disabled = false;
  });
  channel.bind("pusher:subscription_error", (err) => {
    $("subscription").textContent = `refused (${err.status || "error"})`;
    $("subscription").dataset.state = "refused";
  });
  channel.bind(config.events.started, (data) => {
    logEvent("started", `sync started for calendar ${data.calendarId}`);
  });
  channel.bind(config.events.completed, (data) => {
    logEvent("completed", `sync completed for calendar ${data.calendarId}: ${data.eventsSynced} events`);
    $("sync-status").textContent = "";
  });
  channel.bind(config.events.failed, (data) => {
    logEvent("failed", `sync failed for calendar ${data.calendarId}: ${data.reason || data.error}`);
  });

  $("sync").onclick = async () => {
    $("sync-status").textContent = "requested…";
    const { status, json } = await api("POST", `/api/calendars/${me.calendar_id}/sync`);
    $("sync-status").textContent = status === 202 ? "queued" : `HTTP ${status}: ${(json && json.error) || ""}`;
    $("sync-status").dataset.status = String(status);
  };

  $("spy").onclick = () => {
    const target = `private-user-${$("foreign-user").value.trim()}`;
    const foreign = pusher.subscribe(target);
    foreign.bind("pusher:subscription_succeeded", () => {
      $("spy-result").textContent = `joined ${target}`;
      $("spy-result").dataset.state = "subscribed";
    });
    foreign.bind("pusher:subscription_error", (err) => {
      $("spy-result").textContent = `refused (${err.status || "error"})`;
      $("spy-result").className = "refused";
      $("spy-result").dataset.state = "refused";
    });
  };
}

start();
