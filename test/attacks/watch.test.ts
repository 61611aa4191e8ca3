import { expect } from "chai";
import type { IncomingMessage, ServerResponse } from "node:http";
import { toBytes32, sha256Hex, type HexHash } from "../../src/chain/hash";
import { type Engine, type EngineEvent } from "../../src/engine/types";
import { type ProtocolHead } from "../../src/protocol/schema";
import { signHead } from "../../src/protocol/signing";
import { type RunningServer } from "../../src/server";
import { trustedFromDeployment } from "../../src/verify";
import { watchInstance, type WatchEvent, type WatchResult } from "../../src/verify/watch";
import { InstanceRegistry__factory } from "../../typechain-types";
import { contextOf, GatedEngine, passesModel, startGatedRun } from "../helpers/gated-run";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

const NAMES = ["One", "Two", "Three"];
const MODEL = passesModel(NAMES);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits (generously) until `condition` holds; fails the test if it never does. */
async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  for (let waited = 0; !condition(); waited += 50) {
    if (waited > timeoutMs) expect.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * A dishonest issuer's server: the genuine app, but some requests answered by `handler` first (it returns true when
 * it answered). Returns the function that puts the genuine app back.
 */
function intercept(server: RunningServer, handler: (req: IncomingMessage, res: ServerResponse) => boolean): () => void {
  const https = server.server;
  const genuine = https.listeners("request") as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  https.removeAllListeners("request");
  const wrapped = (req: IncomingMessage, res: ServerResponse): void => {
    if (handler(req, res)) return;
    for (const listener of genuine) listener.call(https, req, res);
  };
  https.on("request", wrapped);
  return () => {
    https.removeListener("request", wrapped);
    for (const listener of genuine) https.on("request", listener);
  };
}

/** Sends a head as the server would (JSON), without an ETag. */
function sendHead(res: ServerResponse, head: ProtocolHead): void {
  res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache" });
  res.end(JSON.stringify(head));
}

/** Yields its states `ms` apart (anchored root by root), the end held until `hold`. */
function pacedEngine(names: string[], ms: number, hold: Promise<void>): Engine {
  return {
    name: "local",
    prepare: async () => undefined,
    async *run(model, options): AsyncIterable<EngineEvent> {
      yield { kind: "started", context: contextOf(model, options) };
      for (const name of names) {
        await sleep(ms);
        yield {
          kind: "state",
          name,
          type: "Pass",
          input: options.input,
          iterationPath: [],
          attempt: 0,
          caughtError: null,
          outcome: null,
        };
      }
      await hold;
      yield { kind: "end", status: "succeeded", output: options.input, error: null };
    },
  };
}

/**
 * Attacks on the live views (`statetrail watch`, the SSE stream it follows) by a dishonest issuer's server: what it
 * serves to the watch alone (the verification the watch runs is served the genuine protocol), events it makes up,
 * and states it registers on-chain beside the ones it publishes. Each test asserts the correct behaviour.
 */
describe("attacks: the live views (statetrail watch, SSE)", function () {
  this.timeout(120_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let restore: (() => void) | undefined;
  const open: ServerResponse[] = [];

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "watch-attacks" });
  });
  afterEach(function () {
    restore?.();
    restore = undefined;
    for (const res of open.splice(0)) res.end();
  });
  after(async function () {
    await issuer?.close();
  });

  const startRun = (engine: GatedEngine, input: string) => startGatedRun(issuer, engine, MODEL, input);

  function watch(
    url: string,
    events: WatchEvent[],
    overrides: { graceMs?: number; timeoutMs?: number } = {},
  ): Promise<WatchResult> {
    return watchInstance({
      url,
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: null,
      optional: ["V2"],
      graceMs: overrides.graceMs ?? 1_000,
      pollMs: 200,
      timeoutMs: overrides.timeoutMs ?? 30_000,
      onEvent: (event) => events.push(event),
    });
  }

  async function registerHidden(instanceHash: HexHash, prev: HexHash, label: string): Promise<HexHash> {
    const registry = InstanceRegistry__factory.connect(issuer.registries.instance, issuer.identity.signer);
    const hidden = sha256Hex(label);
    await (await registry.registerState(toBytes32(instanceHash), toBytes32(hidden), toBytes32(prev))).wait();
    return hidden;
  }

  const protocolPath = (instance: HexHash) => `/instances/${instance}/protocol`;
  const show = (events: WatchEvent[]) => JSON.stringify(events);

  it("a made-up SSE `status` event (nothing signed, the head and the chain say running) does not end the watch as terminated", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine, '{"attack": "sse status"}');
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events);
    let settled = false;
    void watching.then(
      () => (settled = true),
      () => (settled = true),
    );
    await until(() => events.some((e) => e.type === "verified"), "the first verification");
    await until(() => issuer.server.app.events.clientCount > 0, "the watch's event stream");
    // The server tells its subscribers the run ended: an unsigned event, the head it serves still says running.
    const head = issuer.home.readHead(run.protocol.instance_hash);
    expect(head.status).to.equal("running");
    issuer.server.notify({ ...head, status: "succeeded" });
    // Give a watch that believed it time to stop (grace + poll, with a wide margin), then let the run really go on.
    for (let waited = 0; !settled && waited < 8_000; waited += 100) await sleep(100);
    engine.releaseAll();
    const [result, finished] = await Promise.all([watching, run.finished]);
    expect(finished.error).to.equal(null);
    const terminated = events.filter((e) => e.type === "terminated");
    expect(terminated, show(events)).to.deep.equal([{ type: "terminated", status: "succeeded", verdict: "valid" }]);
    expect(
      events.filter((e) => e.type === "published"),
      show(events),
    ).to.have.length(NAMES.length + 1);
    expect(result.exitCode).to.equal(0);
  });

  it("a head signed by the issuer saying 'succeeded', served to the watch's polls only, while the chain says running: a divergence, never 'terminated'", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine, '{"attack": "signed end for the watch"}');
    const instance = run.protocol.instance_hash;
    const genuine = issuer.home.readHead(instance);
    const { signature: _signature, ...unsigned } = genuine;
    const ended = await signHead(
      {
        ...unsigned,
        status: "succeeded",
        terminated: { block_nr: genuine.created.block_nr, transaction_hash: genuine.created.transaction_hash },
      },
      issuer.identity.signer,
    );
    // A conditional GET is the watch's poll (the verification never sends If-None-Match): it gets the ended head.
    restore = intercept(issuer.server, (req, res) => {
      if (req.url !== protocolPath(instance) || !req.headers["if-none-match"]) return false;
      sendHead(res, ended);
      return true;
    });
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events, { timeoutMs: 8_000 });
    restore();
    restore = undefined;
    engine.releaseAll();
    await run.finished;
    expect(
      events.filter((e) => e.type === "terminated" && e.status === "running"),
      show(events),
    ).to.deep.equal([]);
    expect(
      events.some((e) => e.type === "divergence"),
      show(events),
    ).to.equal(true);
    expect(result.exitCode).to.equal(1);
  });

  it("a first head naming a creation block past the chain's tip (the verification served the genuine one): a state withheld later is not silently missed (a divergence, exit 1)", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine, '{"attack": "creation block moved"}');
    const instance = run.protocol.instance_hash;
    const genuine = issuer.home.readHead(instance);
    const { signature: _signature, ...unsigned } = genuine;
    const moved = await signHead(
      { ...unsigned, created: { ...unsigned.created, block_nr: 10_000_000 } },
      issuer.identity.signer,
    );
    let first = true;
    restore = intercept(issuer.server, (req, res) => {
      if (req.url !== protocolPath(instance) || !first) return false;
      first = false;
      sendHead(res, moved);
      return true;
    });
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events, { graceMs: 1_000, timeoutMs: 8_000 });
    await until(() => events.some((e) => e.type === "verified"), "the first verification");
    expect(
      events.find((e) => e.type === "verified"),
      show(events),
    ).to.include({ verdict: "valid" });
    const hidden = await registerHidden(instance, instance, "withheld behind a moved creation block");
    const result = await watching;
    engine.releaseAll();
    await run.finished;
    // The withheld state (or the moved creation block that hides it): the watch must report it, never end 0.
    expect(hidden).to.match(/^[0-9a-f]{64}$/);
    expect(
      events.some((e) => e.type === "divergence"),
      show(events),
    ).to.equal(true);
    expect(result.exitCode).to.equal(1);
  });

  it("an SSE stream of forged, replayed, duplicated and reordered `state` events: only the signed pages' entries are published, once each, in order", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine, '{"attack": "sse noise"}');
    const instance = run.protocol.instance_hash;
    const forged = (seq: number) =>
      JSON.stringify({ seq, state_name: "Forged", state_type: "Pass", state_hash: sha256Hex(`forged ${seq}`) });
    restore = intercept(issuer.server, (req, res) => {
      if (!req.url?.startsWith(`/instances/${instance}/events`)) return false;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
      res.write("retry: 100000\n\n");
      for (const seq of [5, 0, 0, 2, 1, 1, 7]) res.write(`id: ${seq}\nevent: state\ndata: ${forged(seq)}\n\n`);
      open.push(res);
      return true;
    });
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events);
    await until(() => events.some((e) => e.type === "verified"), "the first verification");
    for (let step = 0; step <= NAMES.length; step++) {
      engine.release(step);
      await until(() => issuer.home.readHead(instance).entries > step, `state ${step} published`);
    }
    const [result, finished] = await Promise.all([watching, run.finished]);
    expect(finished.error).to.equal(null);
    const protocol = issuer.home.readProtocol(instance);
    const published = events.flatMap((e) => (e.type === "published" ? [[e.seq, e.state_hash]] : []));
    expect(published, show(events)).to.deep.equal(protocol.instance_protocol.map((e) => [e.seq, e.state_hash]));
    expect(events.filter((e) => e.type === "divergence")).to.deep.equal([]);
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid" });
    expect(result.exitCode).to.equal(0);
  });

  it("a head frozen for the watch (304 Not Modified to every poll) while the run registers its states: withheld", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine, '{"attack": "frozen head"}');
    const instance = run.protocol.instance_hash;
    restore = intercept(issuer.server, (req, res) => {
      if (req.url !== protocolPath(instance) || !req.headers["if-none-match"]) return false;
      res.writeHead(304, { etag: String(req.headers["if-none-match"]) });
      res.end();
      return true;
    });
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events, { graceMs: 1_000, timeoutMs: 8_000 });
    await until(() => events.some((e) => e.type === "verified"), "the first verification");
    engine.release(0);
    const result = await watching;
    engine.releaseAll();
    await run.finished;
    expect(
      events.some((e) => e.type === "divergence" && e.kind === "withheld"),
      show(events),
    ).to.equal(true);
    expect(result.exitCode).to.equal(1);
  });

  it("a Merkle-anchored run with another state registered one by one at seq 0: reported as a divergence, not 'could not verify'", async function () {
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    let first: (protocol: ProtocolHead) => void = () => undefined;
    const created = new Promise<ProtocolHead>((resolve) => (first = resolve));
    const tracker = issuer.tracker(pacedEngine(NAMES, 100, hold), {
      anchor: "batch",
      batchSize: 1,
      batchIntervalMs: 100,
      publishIntervalMs: 50,
      onProtocol: (protocol) => {
        issuer.server.notify(protocol);
        first(protocol);
      },
    });
    const finished = tracker.run(MODEL, Buffer.from('{"attack": "anchored and registered"}')).catch(() => undefined);
    const instance = (await created).instance_hash;
    const url = `${issuer.identity.record.url}/instances/${instance}/protocol`;
    await until(() => issuer.home.readHead(instance).entries >= NAMES.length, "the anchored states published");
    // Beside the anchored states it publishes, the issuer registers another state one by one, never published.
    const hidden = await registerHidden(instance, instance, "registered beside the anchored ones");
    const events: WatchEvent[] = [];
    const result = await watch(url, events, { graceMs: 1_000, timeoutMs: 6_000 });
    release();
    await finished;
    expect(
      events.some((e) => e.type === "divergence" && (e.kind === "withheld" || e.kind === "invalid")),
      show(events),
    ).to.equal(true);
    expect(show(events)).to.contain(hidden);
    expect(result.exitCode).to.equal(1);
  });
});
