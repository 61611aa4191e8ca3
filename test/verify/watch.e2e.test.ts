import { expect } from "chai";
import { Wallet } from "ethers";
import net from "node:net";
import { toBytes32, sha256Hex } from "../../src/chain/hash";
import { headOf } from "../../src/protocol/pages";
import { signProtocol } from "../../src/protocol/signing";
import { trustedFromDeployment } from "../../src/verify";
import { watchInstance, type WatchEvent } from "../../src/verify/watch";
import { CertificateRegistry__factory, InstanceRegistry__factory } from "../../typechain-types";
import { useHardhatNode } from "../helpers/node-process";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { GatedEngine, passesModel, startGatedRun } from "../helpers/gated-run";

const NAMES = ["One", "Two", "Three"];
const MODEL = passesModel(NAMES);

describe("statetrail watch (hardhat node process, HTTPS, SSE)", function () {
  this.timeout(120_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url);
  });
  after(async function () {
    await issuer?.close();
  });

  const startRun = (engine: GatedEngine) => startGatedRun(issuer, engine, MODEL, '{"watch": true}');

  function watch(url: string, events: WatchEvent[], overrides: { graceMs?: number; timeoutMs?: number } = {}) {
    return watchInstance({
      url,
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: null,
      optional: ["V2"],
      graceMs: overrides.graceMs ?? 3_000,
      pollMs: 200,
      timeoutMs: overrides.timeoutMs ?? 60_000,
      onEvent: (event) => events.push(event),
    });
  }

  it("follows a genuine run to its end: every state published and registered, final verdict valid", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events);
    for (let step = 0; step <= 3; step++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      engine.release(step);
    }
    const [result, finished] = await Promise.all([watching, run.finished]);
    expect(finished.error).to.equal(null);
    expect(result.exitCode, JSON.stringify(events)).to.equal(0);
    expect(events.filter((e) => e.type === "divergence")).to.deep.equal([]);
    expect(events.filter((e) => e.type === "registered")).to.have.length(4);
    expect(events.filter((e) => e.type === "published").length).to.be.greaterThan(0);
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid" });
  });

  it("a run whose execution input the server does not disclose: final verdict valid-as-disclosed, exit 3", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    engine.releaseAll();
    expect((await run.finished).error).to.equal(null);
    const instance = /\/instances\/([0-9a-f]{64})\/protocol$/.exec(run.url)![1];
    issuer.home.writeInputDocument(instance, Buffer.alloc(0)); // the input withheld: an empty input document
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events);
    expect(result.exitCode, JSON.stringify(events)).to.equal(3);
    expect(result.report.disclosure).to.include({ execution_input: "redacted" });
    const verified = events.find((e) => e.type === "verified");
    expect(verified).to.deep.include({ verdict: "valid-as-disclosed" });
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid-as-disclosed" });
  });

  /** The order of the per-state lines: `published #k` and `registered #k`, as "p0", "r0", … */
  function stateLines(events: WatchEvent[]): string[] {
    return events.flatMap((e) =>
      e.type === "published" ? [`p${e.seq}`] : e.type === "registered" ? [`r${e.seq}`] : [],
    );
  }

  it("started after a short run has finished: says what it watches, then every state from the first in order, then the final verdict", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    engine.releaseAll();
    const finished = await run.finished;
    expect(finished.error).to.equal(null);
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events);
    expect(result.exitCode, JSON.stringify(events)).to.equal(0);
    expect(events[0]).to.deep.equal({
      type: "watching",
      instance_hash: run.protocol.instance_hash,
      issuer: run.protocol.issuer.address,
      model_hash: run.protocol.model_hash,
      states: 4,
      status: "succeeded",
    });
    // Three states and the end entry, each published then registered, in seq order.
    expect(stateLines(events)).to.deep.equal(["p0", "r0", "p1", "r1", "p2", "r2", "p3", "r3"]);
    expect(
      events.filter((e) => e.type === "published").map((e) => (e as { state_name: string }).state_name),
    ).to.deep.equal(["One", "Two", "Three", "$execution"]);
    expect(events.filter((e) => e.type === "divergence")).to.deep.equal([]);
    expect(events.at(-2)).to.deep.include({ type: "verified", verdict: "valid", problems: [] });
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid" });
  });

  it("started mid-run: catches up on the states so far, in order, then follows the rest live", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    engine.release(0);
    engine.release(1);
    // Both states registered and published before the watch starts.
    let protocol = issuer.home.readProtocol(run.protocol.instance_hash);
    while (protocol.instance_protocol.length < 2) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      protocol = issuer.home.readProtocol(run.protocol.instance_hash);
    }
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events);
    while (!events.some((e) => e.type === "registered" && e.seq === 1)) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(events[0]).to.deep.include({ type: "watching", states: 2, status: "running" });
    expect(stateLines(events)).to.deep.equal(["p0", "r0", "p1", "r1"]);
    for (let step = 2; step <= 3; step++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      engine.release(step);
    }
    const [result, finished] = await Promise.all([watching, run.finished]);
    expect(finished.error).to.equal(null);
    expect(result.exitCode, JSON.stringify(events)).to.equal(0);
    const lines = stateLines(events);
    // Every state once each way; the published ones in seq order (live ones may be registered before published).
    expect([...lines].sort()).to.deep.equal(["p0", "p1", "p2", "p3", "r0", "r1", "r2", "r3"]);
    expect(lines.filter((l) => l.startsWith("p"))).to.deep.equal(["p0", "p1", "p2", "p3"]);
    expect(lines.slice(0, 4)).to.deep.equal(["p0", "r0", "p1", "r1"]);
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid" });
  });

  it("a protocol of several pages (2 entries each), watched from mid-run: the open page read again as it grows, then new pages, every state once in order", async function () {
    const names = ["P1", "P2", "P3", "P4", "P5"];
    const engine = new GatedEngine(names);
    const run = await startGatedRun(issuer, engine, passesModel(names), '{"paged": true}', { pageSize: 2 });
    engine.release(0);
    engine.release(1);
    engine.release(2);
    while (issuer.home.readProtocol(run.protocol.instance_hash).instance_protocol.length < 3) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events);
    while (!events.some((e) => e.type === "registered" && e.seq === 2)) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(events[0]).to.deep.include({ type: "watching", states: 3, status: "running" });
    for (let step = 3; step <= names.length; step++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      engine.release(step);
    }
    const [result, finished] = await Promise.all([watching, run.finished]);
    expect(finished.error).to.equal(null);
    expect(result.exitCode, JSON.stringify(events)).to.equal(0);
    expect(events.filter((e) => e.type === "divergence")).to.deep.equal([]);
    const published = events.flatMap((e) => (e.type === "published" ? [e.seq] : []));
    expect(published).to.deep.equal([0, 1, 2, 3, 4, 5]);
    expect(events.filter((e) => e.type === "registered")).to.have.length(6);
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid" });
  });

  it("with the issuer's server down: could-not-verify, naming the failing step, its code, the reason and what to do", async function () {
    const events: WatchEvent[] = [];
    // A port nothing listens on.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const url = `https://127.0.0.1:${port}/instances/${sha256Hex("nothing")}/protocol`;
    const result = await watch(url, events);
    expect(result.exitCode).to.equal(2);
    expect(events.some((e) => e.type === "watching")).to.equal(false);
    const verified = events.find((e) => e.type === "verified");
    expect(verified, JSON.stringify(events)).to.deep.include({ type: "verified", verdict: "could-not-verify" });
    const { problems, hint } = verified as Extract<WatchEvent, { type: "verified" }>;
    expect(problems.length, JSON.stringify(problems)).to.be.greaterThan(0);
    expect(problems[0].step).to.equal("V1");
    expect(problems[0].code, JSON.stringify(problems)).to.be.a("string").and.not.equal("");
    expect(problems[0].detail).to.match(/ECONNREFUSED|refused|reach/i);
    expect(hint).to.match(/what they name|issuer's server/);
  });

  it("reports a state registered on-chain but never published as withheld", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events, { graceMs: 1_000, timeoutMs: 6_000 });
    // The issuer registers a state behind the auditors' backs (the tracker's next registration then fails).
    const registry = InstanceRegistry__factory.connect(issuer.registries.instance, issuer.identity.signer);
    const hidden = sha256Hex("a state nobody was shown");
    await (
      await registry.registerState(
        toBytes32(run.protocol.instance_hash),
        toBytes32(hidden),
        toBytes32(run.protocol.instance_hash),
      )
    ).wait();
    engine.releaseAll();
    const [result] = await Promise.all([watching, run.finished]);
    expect(result.exitCode).to.equal(1);
    const withheld = events.find((e) => e.type === "divergence" && e.kind === "withheld");
    expect(withheld, JSON.stringify(events)).to.not.equal(undefined);
    expect((withheld as { detail: string }).detail).to.contain(hidden);
  });

  it("reports a published state that is not on-chain as forged", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events, { graceMs: 1_000, timeoutMs: 6_000 });
    // The server publishes an entry the chain never saw: a new page line and a head the issuer signs over it.
    const genuine = issuer.home.readProtocol(run.protocol.instance_hash);
    const { signature: _signature, ...unsigned } = structuredClone(genuine);
    const seq = unsigned.instance_protocol.length;
    unsigned.instance_protocol.push({
      event_type: "Register State",
      seq,
      state_name: "One",
      state_type: "Pass",
      state_hash: sha256Hex("forged"),
      prev_state_hash: unsigned.head.state_hash,
      timestamp: genuine.instance_protocol[0]?.timestamp ?? 1,
      block_nr: genuine.created.block_nr,
      client_address: issuer.identity.record.address,
      transaction_hash: genuine.created.transaction_hash,
      state_data: `${issuer.identity.record.url}/states/${sha256Hex("forged")}`,
      proof: null,
    });
    unsigned.head = { seq, state_hash: sha256Hex("forged") };
    const signed = await signProtocol(unsigned, issuer.identity.signer);
    issuer.home.writeProtocol(signed);
    issuer.server.notify(headOf(signed));
    const [result] = await Promise.all([watching, Promise.resolve()]);
    engine.releaseAll();
    await run.finished;
    expect(result.exitCode).to.equal(1);
    expect(
      events.some((e) => e.type === "divergence" && e.kind === "forged"),
      JSON.stringify(events),
    ).to.equal(true);
  });

  it("reports a head the issuer did not sign, served while watching, as forged", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events, { graceMs: 1_000, timeoutMs: 6_000 });
    while (!events.some((e) => e.type === "watching")) await new Promise((resolve) => setTimeout(resolve, 50));
    // The same entries under a head someone else signed, saying the run was aborted.
    const genuine = issuer.home.readProtocol(run.protocol.instance_hash);
    const { signature: _signature, ...unsigned } = structuredClone(genuine);
    const stranger = await signProtocol({ ...unsigned, status: "aborted" }, Wallet.createRandom());
    issuer.home.writeHead(headOf(stranger));
    issuer.server.notify(headOf(stranger));
    const result = await watching;
    engine.releaseAll();
    await run.finished.catch(() => undefined);
    expect(result.exitCode).to.equal(1);
    expect(
      events.some(
        (e) => e.type === "divergence" && e.kind === "forged" && e.detail.includes("not signed by the issuer"),
      ),
      JSON.stringify(events),
    ).to.equal(true);
  });

  it("reports the server certificate revoked while watching", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    const watching = watch(run.url, events, { graceMs: 1_000, timeoutMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const certificates = CertificateRegistry__factory.connect(issuer.registries.certificate, issuer.identity.signer);
    await (await certificates.revokeCertificate(toBytes32(issuer.identity.record.certificate_fingerprint))).wait();
    const result = await watching;
    engine.releaseAll();
    await run.finished;
    expect(result.exitCode).to.equal(1);
    expect(
      events.some((e) => e.type === "divergence" && e.kind === "revoked"),
      JSON.stringify(events),
    ).to.equal(true);
  });
});
