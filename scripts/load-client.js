// Load generator for scripts/load-test.ts and test/load: runs in its own process (plain JavaScript, no ts-node),
// so the server's process holds only the server. Prints one JSON line with its figures on stdout.
//
//   node scripts/load-client.js http '{"url":"https://127.0.0.1:8443/instances/<h>/protocol","connections":32,"seconds":10}'
//   node scripts/load-client.js sse  '{"url":"https://127.0.0.1:8443/instances/<h>/events","clients":200,"seconds":60}'
//
// http: keep-alive GETs on `connections` sockets for `seconds` (or `requests` in all); counts, latencies, errors.
// sse: `clients` subscribers; each counts the `state` events (ids) and the `status` event; ends once every client
// has its status event or `seconds` passed. Sends "ready" on stderr once every subscriber's stream is open.
// TLS certificates are not checked: this measures the server, pinning is tested elsewhere.
"use strict";
const https = require("node:https");

const [mode, json] = process.argv.slice(2);
const options = JSON.parse(json);
// With --auth: the auditor's session token on every request (the server checks the session and the grant each time).
const auth = options.token ? { authorization: `Bearer ${options.token}` } : {};

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function httpLoad() {
  const url = new URL(options.url);
  const agent = new https.Agent({ keepAlive: true, maxSockets: options.connections, rejectUnauthorized: false });
  const latencies = [];
  const statuses = {};
  let errors = 0;
  let bytes = 0;
  let sent = 0;
  const started = Date.now();
  const deadline = started + (options.seconds ?? 3600) * 1000;
  const limit = options.requests ?? Infinity;
  const one = () =>
    new Promise((resolve) => {
      const t0 = process.hrtime.bigint();
      const req = https.get(url, { agent, headers: { accept: "application/json", ...auth } }, (res) => {
        let size = 0;
        res.on("data", (chunk) => (size += chunk.length));
        res.on("end", () => {
          latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode !== 200) errors += 1;
          bytes += size;
          resolve();
        });
        res.on("error", () => {
          errors += 1;
          resolve();
        });
      });
      req.on("error", () => {
        errors += 1;
        resolve();
      });
    });
  const loop = async () => {
    while (Date.now() < deadline && sent < limit) {
      sent += 1;
      await one();
    }
  };
  await Promise.all(Array.from({ length: options.connections }, loop));
  const seconds = (Date.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    mode,
    requests: latencies.length,
    seconds,
    requests_per_second: latencies.length / seconds,
    latency_ms: {
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? null,
    },
    statuses,
    errors,
    bytes,
  };
}

async function sseLoad() {
  const url = new URL(options.url);
  const agent = new https.Agent({ keepAlive: false, maxSockets: Infinity, rejectUnauthorized: false });
  const clients = [];
  let opened = 0;
  let finished = 0;
  let resolveAll;
  const all = new Promise((resolve) => (resolveAll = resolve));
  const started = Date.now();
  for (let i = 0; i < options.clients; i++) {
    const client = { ids: new Set(), duplicates: 0, status: null, error: null, events: 0, firstAt: null };
    clients.push(client);
    const req = https.get(url, { agent, headers: { accept: "text/event-stream", ...auth } }, (res) => {
      if (res.statusCode !== 200) {
        client.error = `HTTP ${res.statusCode}`;
        res.resume();
        finished += 1;
        if (finished === options.clients) resolveAll();
        return;
      }
      opened += 1;
      if (opened === options.clients) process.stderr.write("ready\n");
      res.setEncoding("utf8");
      let buffer = "";
      res.on("data", (text) => {
        buffer += text;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = "message";
          let id;
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (type === "state") {
            client.events += 1;
            client.firstAt ??= Date.now();
            if (client.ids.has(id)) client.duplicates += 1;
            client.ids.add(id);
          } else if (type === "status") {
            client.status = JSON.parse(data);
            finished += 1;
            res.destroy();
            if (finished === options.clients) resolveAll();
          }
        }
      });
      res.on("error", (error) => (client.error ??= error.message));
    });
    req.on("error", (error) => {
      client.error ??= error.message;
    });
  }
  const timer = setTimeout(resolveAll, (options.seconds ?? 120) * 1000);
  await all;
  clearTimeout(timer);
  agent.destroy();
  const expected = options.expected ?? Math.max(...clients.map((c) => c.ids.size));
  return {
    mode,
    clients: options.clients,
    opened,
    with_status: clients.filter((c) => c.status).length,
    complete: clients.filter((c) => c.status && c.ids.size === c.status.head.seq + 1).length,
    events_delivered: clients.reduce((sum, c) => sum + c.events, 0),
    duplicates: clients.reduce((sum, c) => sum + c.duplicates, 0),
    states_per_client: {
      min: Math.min(...clients.map((c) => c.ids.size)),
      max: Math.max(...clients.map((c) => c.ids.size)),
    },
    expected,
    errors: clients.filter((c) => c.error).map((c) => c.error),
    seconds: (Date.now() - started) / 1000,
  };
}

(mode === "http" ? httpLoad() : sseLoad()).then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
  },
  (error) => {
    process.stderr.write(`${error.stack}\n`);
    process.exit(1);
  },
);
