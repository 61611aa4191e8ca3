/**
 * Load test on loopback: the issuer's HTTPS server answers protocol requests from many keep-alive connections and
 * streams a tracked run to many SSE subscribers at the same time, while the tracker registers the run's states on
 * a `hardhat node` process. The load comes from separate processes (scripts/load-client.js), so the figures and the
 * memory are the server's (and its in-process tracker's).
 *
 *   npx ts-node --transpile-only scripts/load-test.ts [--seconds 15] [--connections 32] [--subscribers 200]
 *                                                      [--auth] [--out load-test.json]
 *
 * --auth: the issuer's data is private (access.json, mode private, one `all` grant to an auditor key made for the
 * run); the auditor signs in once (EIP-4361) and every request and subscriber carries its session token, so each
 * request also passes the server's sign-in and grant checks. Requests without the token are answered 401.
 *
 * Prints a table (requests/s, latency p50/p99, SSE clients, events delivered, RSS before/after) and writes the
 * figures as JSON. Exit code 1 when there were errors or a subscriber missed an event.
 */
import "../src/engine/polyfill";
import { spawn } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { Wallet } from "ethers";
import { startNode, freePort } from "../src/chain/node";
import { createEngine } from "../src/engine";
import { loadHandlerModule, type TaskHandlers } from "../src/engine/local";
import { loadModel } from "../src/model/load";
import { type ProtocolHead } from "../src/protocol/schema";
import { buildSignInMessage } from "../src/identity/siwe";
import { grantAccess } from "../src/store/access";
import { setupIssuer } from "../test/helpers/issuer";

const ROOT = path.resolve(__dirname, "..");
const EXAMPLES = path.join(ROOT, "examples");
const CLIENT = path.join(__dirname, "load-client.js");

export interface LoadTestOptions {
  /** Duration of the protocol request load (it also runs on after the tracked run until this is over). */
  seconds: number;
  /** Keep-alive connections of the request load. */
  connections: number;
  /** SSE subscribers of the tracked run. */
  subscribers: number;
  /** Stop the request load after this many requests (default: time only). */
  requests?: number;
  /** Private data: every request and subscriber signed in (see the header). */
  auth?: boolean;
  log?: (message: string) => void;
}

export interface HttpFigures {
  requests: number;
  seconds: number;
  requests_per_second: number;
  latency_ms: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  statuses: Record<string, number>;
  errors: number;
  bytes: number;
}

export interface SseFigures {
  clients: number;
  opened: number;
  with_status: number;
  complete: number;
  events_delivered: number;
  duplicates: number;
  states_per_client: { min: number; max: number };
  expected: number;
  errors: string[];
  seconds: number;
}

export interface LoadTestResult {
  statetrail_load_test: 1;
  date: string;
  machine: { cpus: number; load_average: number[]; node: string };
  options: { seconds: number; connections: number; subscribers: number; auth: boolean };
  /** With --auth: requests answered without the token (must be 401, no data). */
  unauthenticated?: { status: number; bytes: number; data_leaked: boolean };
  protocol: { states: number; bytes: number };
  http: HttpFigures;
  sse: SseFigures;
  tracked_run: { states: number; status: string; seconds: number };
  rss_mb: { before: number; peak: number; after: number };
  heap_used_mb: { before: number; after: number };
  ok: boolean;
  problems: string[];
}

/** A full garbage collection before each memory reading, so "after" is what the load left behind, not garbage. */
function collectGarbage(): void {
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}

function mb(bytes: number): number {
  return Math.round((bytes / 1024 / 1024) * 10) / 10;
}

/** Runs scripts/load-client.js; resolves its JSON line. `onReady` fires when it prints "ready" on stderr. */
function client<T>(mode: "http" | "sse", options: object, onReady?: () => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT, mode, JSON.stringify(options)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (onReady && /^ready$/m.test(stderr)) {
        const ready = onReady;
        onReady = undefined;
        ready();
      }
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`load client (${mode}) exited ${code}: ${stderr.slice(-2000)}`));
      try {
        resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as T);
      } catch (error) {
        reject(new Error(`load client (${mode}) printed no figures: ${(error as Error).message}\n${stdout}`));
      }
    });
  });
}

/**
 * The load test: a hardhat node process, an issuer (registries, identity, HTTPS server), one finished run whose
 * protocol is the request target, then a second run tracked while the request load and the subscribers run.
 * The second run's Tasks wait until every subscriber's stream is open, so each one must receive every state
 * live (those before the first Task come as a replay on connect).
 */
export async function runLoadTest(options: LoadTestOptions): Promise<LoadTestResult> {
  const log = options.log ?? (() => undefined);
  const node = await startNode({ port: await freePort(), hostname: "127.0.0.1" });
  const issuer = await setupIssuer(node.url).catch(async (error: unknown) => {
    await node.stop();
    throw error;
  });
  let rssPeak = 0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
  try {
    // Larger subscriber counts than the default limit of the hub are what this test is about.
    const model = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
    const handlers = loadHandlerModule(path.join(EXAMPLES, "batch-scoring.handlers.js"));
    log(`chain ${node.url}, server ${issuer.server.url}`);

    const first = await issuer
      .tracker(createEngine({ engine: "local", handlers, skipWaits: true }))
      .run(model, Buffer.from('{"batchId":"load-warm-up"}'));
    const target = `${issuer.server.url}/instances/${first.instance_hash}/protocol`;
    const protocolBytes = fs.statSync(issuer.home.protocolFile(first.instance_hash)).size;
    log(`warm-up run: ${first.entries} states, protocol ${protocolBytes} bytes`);

    let token: string | undefined;
    let unauthenticated: LoadTestResult["unauthenticated"];
    if (options.auth) {
      const auditor = Wallet.createRandom();
      await grantAccess(issuer.home, { scope: "all", grantee: auditor.address });
      const anonymous = await request(target);
      unauthenticated = {
        status: anonymous.status,
        bytes: anonymous.body.length,
        data_leaked: anonymous.body.includes(first.instance_hash),
      };
      token = await signIn(issuer.server.url, auditor);
      log(`private: auditor ${auditor.address} signed in; anonymous request: ${anonymous.status}`);
    }

    collectGarbage();
    const before = process.memoryUsage();
    rssPeak = before.rss;

    // The tracked run: every Task waits for the gate, opened once all subscribers are connected.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const gated: TaskHandlers = Object.fromEntries(
      Object.entries(handlers).map(([name, handler]) => [
        name,
        async (input: unknown, context: unknown) => {
          await gate;
          return (handler as (input: unknown, context: unknown) => unknown)(input, context);
        },
      ]),
    ) as TaskHandlers;
    let sse: Promise<SseFigures> | undefined;
    let subscribed: Promise<void> | undefined;
    const started = Date.now();
    const tracker = issuer.tracker(createEngine({ engine: "local", handlers: gated, skipWaits: true }), {
      onProtocol: (protocol: ProtocolHead) => {
        issuer.server.notify(protocol);
        if (sse) return;
        const events = `${issuer.server.url}/instances/${protocol.instance_hash}/events`;
        subscribed = new Promise<void>((resolve) => {
          sse = client<SseFigures>("sse", { url: events, clients: options.subscribers, seconds: 300, token }, resolve);
        });
        void subscribed.then(() => {
          log(`${options.subscribers} subscribers connected; the run proceeds`);
          openGate();
        });
      },
    });
    const http = client<HttpFigures>("http", {
      url: target,
      connections: options.connections,
      seconds: options.seconds,
      requests: options.requests,
      token,
    });
    const run = tracker.run(model, Buffer.from('{"batchId":"load-tracked"}'));
    // If the subscribers never connect, don't leave the run waiting forever.
    const guard = setTimeout(() => openGate(), 120_000);
    const tracked = await run;
    const trackedSeconds = (Date.now() - started) / 1000;
    clearTimeout(guard);
    log(`tracked run: ${tracked.entries} states, ${tracked.status}, ${trackedSeconds.toFixed(1)} s`);
    const sseFigures = await sse!;
    const httpFigures = await http;
    collectGarbage();
    const after = process.memoryUsage();
    rssPeak = Math.max(rssPeak, after.rss);

    const problems: string[] = [];
    if (httpFigures.errors > 0)
      problems.push(`${httpFigures.errors} request errors: ${JSON.stringify(httpFigures.statuses)}`);
    if (sseFigures.errors.length > 0) problems.push(`subscriber errors: ${sseFigures.errors.slice(0, 5).join("; ")}`);
    if (sseFigures.opened !== options.subscribers) problems.push(`only ${sseFigures.opened} subscribers connected`);
    if (sseFigures.complete !== options.subscribers) {
      problems.push(`${options.subscribers - sseFigures.complete} subscribers missed events or the status`);
    }
    if (sseFigures.states_per_client.min !== tracked.entries) {
      problems.push(`a subscriber got ${sseFigures.states_per_client.min} of ${tracked.entries} states`);
    }
    if (sseFigures.duplicates > 0) problems.push(`${sseFigures.duplicates} duplicate events`);
    if (unauthenticated && (unauthenticated.status !== 401 || unauthenticated.data_leaked)) {
      problems.push(`a request without the token was answered ${unauthenticated.status}`);
    }
    return {
      statetrail_load_test: 1,
      date: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        load_average: os.loadavg().map((n) => Math.round(n * 100) / 100),
        node: process.version,
      },
      options: {
        seconds: options.seconds,
        connections: options.connections,
        subscribers: options.subscribers,
        auth: options.auth ?? false,
      },
      ...(unauthenticated ? { unauthenticated } : {}),
      protocol: { states: first.entries, bytes: protocolBytes },
      http: httpFigures,
      sse: { ...sseFigures, expected: tracked.entries },
      tracked_run: { states: tracked.entries, status: tracked.status, seconds: trackedSeconds },
      rss_mb: { before: mb(before.rss), peak: mb(rssPeak), after: mb(after.rss) },
      heap_used_mb: { before: mb(before.heapUsed), after: mb(after.heapUsed) },
      ok: problems.length === 0,
      problems,
    };
  } finally {
    clearInterval(sampler);
    await issuer.close();
    await node.stop();
  }
}

/** One GET over TLS without checking the certificate (the load clients don't either: this measures the server). */
function request(
  url: string,
  init: { method?: string; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: init.method ?? "GET",
        rejectUnauthorized: false,
        headers: init.body ? { "content-type": "application/json" } : {},
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** Signs `auditor` in to the server (EIP-4361, docs/design/ACCESS.md) and returns the session token. */
async function signIn(
  serverUrl: string,
  auditor: { address: string; signMessage(message: string): Promise<string> },
): Promise<string> {
  const url = new URL(serverUrl);
  const nonce = JSON.parse((await request(`${url.origin}/auth/nonce`)).body) as { nonce: string };
  const now = Date.now();
  const message = buildSignInMessage({
    domain: url.host,
    address: auditor.address,
    uri: url.origin,
    chainId: 31337,
    nonce: nonce.nonce,
    issuedAt: new Date(now),
    expirationTime: new Date(now + 50 * 60_000),
  });
  const signature = await auditor.signMessage(message);
  const answer = await request(`${url.origin}/auth/siwe`, {
    method: "POST",
    body: JSON.stringify({ message, signature }),
  });
  if (answer.status !== 200) throw new Error(`sign-in refused (${answer.status}): ${answer.body}`);
  return (JSON.parse(answer.body) as { token: string }).token;
}

export function renderTable(result: LoadTestResult): string {
  const { http, sse } = result;
  const ms = (value: number | null) => (value === null ? "-" : `${value.toFixed(1)} ms`);
  const rows: [string, string][] = [
    [
      "protocol requests",
      `${http.requests} in ${http.seconds.toFixed(1)} s over ${result.options.connections} connections`,
    ],
    ["requests/s", http.requests_per_second.toFixed(0)],
    [
      "latency p50 / p90 / p99 / max",
      `${ms(http.latency_ms.p50)} / ${ms(http.latency_ms.p90)} / ${ms(http.latency_ms.p99)} / ${ms(http.latency_ms.max)}`,
    ],
    ["request errors", `${http.errors} (statuses ${JSON.stringify(http.statuses)})`],
    ["protocol size", `${result.protocol.states} states, ${result.protocol.bytes} bytes`],
    [
      "access",
      result.unauthenticated
        ? `private: every request and subscriber signed in (EIP-4361 session token, grant checked per request); ` +
          `without the token: ${result.unauthenticated.status}, ${result.unauthenticated.bytes} bytes, ` +
          `${result.unauthenticated.data_leaked ? "DATA LEAKED" : "no data"}`
        : "open (no sign-in)",
    ],
    ["SSE clients (connected / complete)", `${sse.opened} / ${sse.complete} of ${sse.clients}`],
    [
      "SSE events delivered",
      `${sse.events_delivered} (${sse.expected} states x ${sse.clients} clients = ${sse.expected * sse.clients}), ${sse.duplicates} duplicates`,
    ],
    [
      "tracked run",
      `${result.tracked_run.states} states, ${result.tracked_run.status}, ${result.tracked_run.seconds.toFixed(1)} s`,
    ],
    ["RSS before / peak / after", `${result.rss_mb.before} / ${result.rss_mb.peak} / ${result.rss_mb.after} MB`],
    ["heap used before / after", `${result.heap_used_mb.before} / ${result.heap_used_mb.after} MB`],
    [
      "machine",
      `${result.machine.cpus} CPUs, load average ${result.machine.load_average.join(" ")}, Node ${result.machine.node}`,
    ],
    ["result", result.ok ? "ok" : `PROBLEMS: ${result.problems.join("; ")}`],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  return [
    "| figure | value |",
    "| --- | --- |",
    ...rows.map(([name, value]) => `| ${name.padEnd(width)} | ${value} |`),
  ].join("\n");
}

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1] : fallback;
}

if (require.main === module) {
  const out = path.resolve(argument("out", path.join(ROOT, "load-test.json")));
  runLoadTest({
    seconds: Number(argument("seconds", "15")),
    connections: Number(argument("connections", "32")),
    subscribers: Number(argument("subscribers", "200")),
    auth: process.argv.includes("--auth"),
    log: (message) => process.stderr.write(`${message}\n`),
  }).then(
    (result) => {
      fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
      process.stdout.write(renderTable(result) + "\n");
      process.stderr.write(`figures written to ${out}\n`);
      process.exitCode = result.ok ? 0 : 1;
    },
    (error: unknown) => {
      process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 70;
    },
  );
}
