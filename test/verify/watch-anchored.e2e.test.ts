import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { type Engine, type EngineEvent } from "../../src/engine/types";
import { type ProtocolHead } from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { trustedFromDeployment } from "../../src/verify";
import { watchInstance, type WatchEvent } from "../../src/verify/watch";
import { useHardhatNode } from "../helpers/node-process";
import { contextOf, passesModel } from "../helpers/gated-run";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";

const NAMES = ["One", "Two", "Three", "Four"];
const MODEL = passesModel(NAMES);

/** Yields its states `ms` apart, so the watcher sees them anchored root by root; the end waits for `hold`. */
function pacedEngine(ms: number, hold: Promise<void> = Promise.resolve()): Engine {
  return {
    name: "local",
    prepare: async () => undefined,
    async *run(model, options): AsyncIterable<EngineEvent> {
      yield { kind: "started", context: contextOf(model, options) };
      for (const name of NAMES) {
        await new Promise((resolve) => setTimeout(resolve, ms));
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

describe("statetrail watch on a Merkle-anchored run (hardhat node process, HTTPS, SSE)", function () {
  this.timeout(60_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "watch-anchored" });
  });
  after(async function () {
    await issuer?.close();
  });

  async function startRun(
    hold?: Promise<void>,
  ): Promise<{ protocol: ProtocolHead; url: string; finished: Promise<unknown> }> {
    let first: (protocol: ProtocolHead) => void = () => undefined;
    const created = new Promise<ProtocolHead>((resolve) => (first = resolve));
    const tracker = issuer.tracker(pacedEngine(150, hold), {
      anchor: "batch",
      batchSize: 2,
      batchIntervalMs: 100,
      publishIntervalMs: 50,
      onProtocol: (protocol) => {
        issuer.server.notify(protocol);
        first(protocol);
      },
    });
    const finished = tracker.run(MODEL, Buffer.from('{"watch": "anchored"}'));
    const protocol = await created;
    return { protocol, finished, url: `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol` };
  }

  function watch(url: string, events: WatchEvent[], timeoutMs = 20_000) {
    return watchInstance({
      url,
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: null,
      optional: ["V2"],
      graceMs: 1_500,
      pollMs: 200,
      timeoutMs,
      onEvent: (event) => events.push(event),
    });
  }

  it("follows it to its end: every anchored state confirmed in a root, no divergence, final verdict valid", async function () {
    const run = await startRun();
    const events: WatchEvent[] = [];
    const [result] = await Promise.all([watch(run.url, events), run.finished]);
    expect(
      events.filter((e) => e.type === "divergence"),
      JSON.stringify(events),
    ).to.deep.equal([]);
    expect(events.filter((e) => e.type === "registered")).to.have.length(NAMES.length + 1);
    expect(result.exitCode, JSON.stringify(events)).to.equal(0);
    expect(events.at(-1)).to.deep.include({ type: "terminated", status: "succeeded", verdict: "valid" });
  });

  it("reports a published anchored entry whose proof reaches no anchored root as forged", async function () {
    let release!: () => void;
    const run = await startRun(new Promise<void>((resolve) => (release = resolve)));
    // Wait until the four states are anchored and published, the run held before its end.
    let genuine = issuer.home.readProtocol(run.protocol.instance_hash);
    while (genuine.instance_protocol.length < NAMES.length) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      genuine = issuer.home.readProtocol(run.protocol.instance_hash);
    }
    // The server publishes one more entry, with a genuine entry's proof: it reaches no root the issuer anchored.
    const { signature: _signature, ...unsigned } = structuredClone(genuine);
    const last = unsigned.instance_protocol[unsigned.instance_protocol.length - 1];
    unsigned.instance_protocol.push({
      ...last,
      seq: last.seq + 1,
      state_hash: sha256Hex("forged"),
      prev_state_hash: last.state_hash,
      state_data: `${issuer.identity.record.url}/states/${sha256Hex("forged")}`,
    });
    unsigned.head = { seq: last.seq + 1, state_hash: sha256Hex("forged") };
    const forged = await signProtocol(unsigned, issuer.identity.signer);
    issuer.home.writeProtocol(forged);
    const events: WatchEvent[] = [];
    const result = await watch(run.url, events, 4_000);
    release();
    await run.finished.catch(() => undefined);
    expect(result.exitCode).to.equal(1);
    expect(
      events.some(
        (e) =>
          e.type === "divergence" && e.kind === "forged" && /not in a Merkle root the issuer anchored/.test(e.detail),
      ),
      JSON.stringify(events),
    ).to.equal(true);
  });
});
