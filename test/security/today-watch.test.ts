import { expect } from "chai";
import { toBytes32, sha256Hex } from "../../src/chain/hash";
import { trustedFromDeployment } from "../../src/verify";
import { watchInstance, type WatchEvent } from "../../src/verify/watch";
import { InstanceRegistry__factory } from "../../typechain-types";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { GatedEngine, passesModel, startGatedRun } from "../helpers/gated-run";
import { useHardhatNode } from "../helpers/node-process";

const NAMES = ["One", "Two"];
const MODEL = passesModel(NAMES);

/**
 * watch (today's change): the first line from the unverified head, and a first verification of a running instance
 * that fails only V7 downgraded to could-not-verify. A dishonest issuer keeps the instance running and lets the
 * auditor's --timeout end the watch: the exit must never be 0 unless a full verification covered every state seen.
 */
describe("security (today): watch ended by --timeout on a running instance", function () {
  this.timeout(120_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url);
  });
  after(async function () {
    await issuer?.close();
  });

  const startRun = (engine: GatedEngine) => startGatedRun(issuer, engine, MODEL, '{"attack": true}');

  function watch(url: string, events: WatchEvent[], graceMs: number, timeoutMs: number) {
    return watchInstance({
      url,
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: null,
      optional: ["V2"],
      graceMs,
      pollMs: 200,
      timeoutMs,
      onEvent: (event) => events.push(event),
    });
  }

  async function registerHidden(instanceHash: string, label: string): Promise<string> {
    const registry = InstanceRegistry__factory.connect(issuer.registries.instance, issuer.identity.signer);
    const hidden = sha256Hex(label);
    await (await registry.registerState(toBytes32(instanceHash), toBytes32(hidden), toBytes32(instanceHash))).wait();
    return hidden;
  }

  async function until(events: WatchEvent[], type: WatchEvent["type"]): Promise<void> {
    for (let i = 0; i < 300 && !events.some((event) => event.type === type); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(events.map((event) => event.type)).to.include(type);
  }

  it("a state registered right after the first (valid) verification and withheld inside the grace period: not 0", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    // A long grace (the auditor's default is 10 s) and a shorter --timeout: the withheld state is never reported.
    const watching = watch(run.url, events, 60_000, 4_000);
    await until(events, "verified");
    expect(events.find((event) => event.type === "verified")).to.include({ verdict: "valid" });
    const hidden = await registerHidden(run.protocol.instance_hash, "withheld after the first verification");
    const result = await watching;
    engine.releaseAll();
    await run.finished;
    expect(
      events.some((event) => event.type === "registered" && event.state_hash === hidden),
      JSON.stringify(events),
    ).to.equal(true);
    expect(result.exitCode, JSON.stringify(events)).to.not.equal(0);
  });

  it("a state withheld before the watch starts (V7 only, downgraded while running), --timeout inside the grace: not 0", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    await registerHidden(run.protocol.instance_hash, "withheld before the watch");
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events, 60_000, 3_000);
    engine.releaseAll();
    await run.finished;
    expect(result.report.verdict, JSON.stringify(events)).to.not.equal("valid");
    expect(result.exitCode, JSON.stringify(events)).to.not.equal(0);
  });

  it("the same withheld state with a short grace: reported as withheld, exit 1", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    await registerHidden(run.protocol.instance_hash, "withheld, short grace");
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events, 500, 4_000);
    engine.releaseAll();
    await run.finished;
    expect(result.exitCode, JSON.stringify(events)).to.equal(1);
    expect(events.some((event) => event.type === "divergence" && event.kind === "withheld")).to.equal(true);
  });

  it("a running instance with nothing new while watched still ends 0 only from its full verification", async function () {
    const engine = new GatedEngine(NAMES);
    const run = await startRun(engine);
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events, 60_000, 2_000);
    engine.releaseAll();
    await run.finished;
    const verified = events.filter((event) => event.type === "verified");
    expect(verified, JSON.stringify(events)).to.have.length(1);
    expect(result.report.verdict).to.equal("valid");
    expect(result.exitCode).to.equal(0);
  });
});
