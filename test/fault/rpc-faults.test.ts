import "../../src/engine/polyfill";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { connect, resendable } from "../../src/chain/provider";
import { createEngine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { type InstanceProtocol, type ProtocolHead } from "../../src/protocol/schema";
import { ChainView, rebuildChain, verifyProtocol } from "../../src/verify";
import { runCli } from "../helpers/cli-run";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";
import { startRpcProxy, type RpcProxy } from "../helpers/rpc-proxy";

/**
 * RPC faults through a TCP proxy between the tracker and a `hardhat node` process (DESIGN.md, "Faults"): the
 * provider reports an unreachable node with RPC_UNREACHABLE at once, and a run whose connections drop mid-way
 * fails with a coded error, leaving a published protocol that verifies as what was registered so far.
 */

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");

async function codeOf(promise: Promise<unknown>): Promise<{ code?: string; message: string; ms: number }> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message, ms: Date.now() - started };
  }
  return { code: undefined, message: "resolved", ms: Date.now() - started };
}

describe("RPC faults (TCP proxy in front of a hardhat node process)", function () {
  this.timeout(120_000);
  const chain = useHardhatNode();
  let proxy: RpcProxy;

  before(async function () {
    proxy = await startRpcProxy(chain.url);
  });
  after(async function () {
    await proxy?.close();
  });

  describe("unreachable at the start: connect() fails fast with RPC_UNREACHABLE", function () {
    afterEach(async function () {
      proxy.reset(false);
      proxy.blackhole(false);
      await proxy.accept();
    });

    it("refused (nothing listens)", async function () {
      await proxy.refuse();
      const result = await codeOf(connect({ rpcUrl: proxy.url, timeoutMs: 5_000 }));
      expect(result.code).to.equal("RPC_UNREACHABLE");
      expect(result.message).to.match(/connection refused/);
    });

    it("reset on accept", async function () {
      proxy.reset(true);
      const result = await codeOf(connect({ rpcUrl: proxy.url, timeoutMs: 5_000 }));
      expect(result.code).to.equal("RPC_UNREACHABLE");
      expect(result.message).to.not.match(/no answer within/);
    });

    it("accepted but never answered: the probe's deadline", async function () {
      proxy.blackhole(true);
      const result = await codeOf(connect({ rpcUrl: proxy.url, timeoutMs: 700 }));
      expect(result.code).to.equal("RPC_UNREACHABLE");
      expect(result.message).to.match(/no answer within 700 ms/);
      expect(result.ms).to.be.at.least(650); // not before its deadline (the message names the one that fired)
    });

    it("the CLI: exit 2 (could not verify) with the coded error and a hint for the auditor", async function () {
      await proxy.refuse();
      // Registries given explicitly: no deployments/localhost needed (it is not in a fresh checkout).
      const registries = ["0x" + "11".repeat(20), "0x" + "22".repeat(20), "0x" + "33".repeat(20)].join(",");
      const result = await runCli([
        "--json",
        "--rpc",
        proxy.url,
        "verify",
        "https://127.0.0.1:1/instances/x/protocol",
        "--registries",
        registries,
        "--chain-id",
        "31337",
      ]);
      // Issue 15 item 6: the auditor's commands have one table of exit codes; a report says what could not be done.
      expect(result.code).to.equal(2);
      const v0 = JSON.parse(result.stdout).reports[0].steps[0] as { id: string; code: string; problems: string[] };
      expect(v0).to.include({ id: "V0", code: "RPC_UNREACHABLE" });
      expect(v0.problems.join("\n")).to.contain("what to do:").and.contain("--rpc");
    });

    it("through the proxy when it is healthy, the same endpoint works", async function () {
      const provider = await connect({ rpcUrl: proxy.url });
      expect(Number((await provider.getNetwork()).chainId)).to.equal(31337);
      provider.destroy();
    });
  });

  describe("a lost connection: what is resent", function () {
    it("a read is resent after resets on connect, with back-off; a node-side action (evm_mine) is not", async function () {
      const provider = await connect({ rpcUrl: proxy.url });
      try {
        await provider.getBlockNumber(); // connected: the next requests need new connections
        proxy.dropAll();
        proxy.resetNext(2);
        const before = proxy.stats.refused;
        expect(await provider.getBlockNumber()).to.be.a("number");
        expect(proxy.stats.refused - before).to.equal(2);
        proxy.dropAll();
        proxy.resetNext(1);
        const failure = await codeOf(provider.send("evm_mine", []));
        expect(failure.code).to.equal("ECONNRESET");
        expect(proxy.stats.refused - before).to.equal(3);
      } finally {
        proxy.resetNext(0);
        provider.destroy();
      }
    });

    it("resendable: reads and raw transactions, never what the node signs or does", function () {
      for (const method of [
        "eth_call",
        "eth_getLogs",
        "eth_sendRawTransaction",
        "eth_getTransactionCount",
        "net_version",
      ]) {
        expect(resendable(method), method).to.equal(true);
      }
      for (const method of [
        "eth_sendTransaction",
        "eth_sign",
        "eth_signTypedData_v4",
        "evm_mine",
        "hardhat_setBalance",
      ]) {
        expect(resendable(method), method).to.equal(false);
      }
    });
  });

  describe("connections dropped mid-run", function () {
    let issuer: TestIssuer;
    before(async function () {
      issuer = await setupIssuer(proxy.url);
    });
    after(async function () {
      await issuer?.close();
    });
    afterEach(async function () {
      proxy.delay(0);
      await proxy.accept();
    });

    /** A tracked run of the 24-item Map model; `fault` is applied once `after` states are published. */
    async function faultyRun(after: number, fault: () => void, options: { maxInFlight?: number } = {}) {
      const model = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
      const engine = createEngine({
        engine: "local",
        handlers: path.join(EXAMPLES, "batch-scoring.handlers.js"),
        skipWaits: true,
      });
      let published: ProtocolHead | undefined;
      let faulted = false;
      const tracker = issuer.tracker(engine, {
        maxInFlight: options.maxInFlight ?? 1,
        onProtocol: (protocol) => {
          issuer.server.notify(protocol);
          published = protocol;
          if (!faulted && protocol.entries >= after) {
            faulted = true;
            fault();
          }
        },
      });
      const outcome = await codeOf(tracker.run(model, Buffer.from(`{"batchId":"fault-${Date.now()}"}`)));
      expect(faulted, "the fault was injected").to.equal(true);
      // The last head published, with the entries it counts (the pages may hold more: appended, not yet counted).
      return {
        outcome,
        protocol: { ...published!, instance_protocol: issuer.home.readEntries(published!, 0, published!.entries) },
      };
    }

    /**
     * Verifies the published protocol reading the chain directly: every check passes except that V7 may find
     * states registered after the last published one (the run died between registering and publishing them).
     * Returns how many states the chain holds beyond the protocol.
     */
    async function verifyPrefix(protocol: InstanceProtocol): Promise<{ beyond: number; verdict: string }> {
      const provider = await connect({ rpcUrl: chain.url, ensRegistry: issuer.deployment.ens.registry });
      try {
        const trusted = { chainId: 31337, registries: issuer.registries, source: "test" };
        const report = await verifyProtocol({
          input: { url: `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol` },
          provider,
          trusted,
          optional: ["V2"],
          ens: null,
        });
        for (const id of ["V0", "V1", "V3", "V4", "V5", "V6", "V8", "V9"]) {
          const step = report.steps.find((s) => s.id === id)!;
          expect(step.status, `${id}: ${step.detail}`).to.equal("pass");
        }
        const view = new ChainView(provider, trusted);
        const events = await view.instanceEvents(
          protocol.issuer.address,
          protocol.instance_hash,
          protocol.created.block_nr,
        );
        const onChain = rebuildChain(protocol.instance_hash, events);
        expect(onChain.anomalies).to.deep.equal([]);
        const published = protocol.instance_protocol.map((entry) => entry.state_hash);
        // The published entries are exactly the first states of the on-chain chain.
        expect(onChain.states.slice(0, published.length).map((state) => state.stateHash)).to.deep.equal(published);
        const beyond = onChain.states.length - published.length;
        const v7 = report.steps.find((s) => s.id === "V7")!;
        if (beyond === 0) expect(v7.status, v7.detail).to.equal("pass");
        else {
          expect(v7.status).to.equal("fail");
          expect(v7.detail).to.match(/withheld/);
          // Their data was stored before they were sent: a resuming tracker can publish them.
          for (const state of onChain.states.slice(published.length)) {
            expect(fs.existsSync(issuer.home.stateFile(state.stateHash)), state.stateHash).to.equal(true);
          }
        }
        return { beyond, verdict: report.verdict };
      } finally {
        provider.destroy();
      }
    }

    it("the node becomes unreachable: a coded error; the protocol verifies as a prefix of the chain", async function () {
      const { outcome, protocol } = await faultyRun(5, () => void proxy.refuse());
      await proxy.accept();
      expect(outcome.message).to.not.equal("resolved");
      expect(["RPC_UNREACHABLE", "TX_FAILED"], outcome.message).to.include(outcome.code);
      expect(protocol.status).to.equal("running");
      const { beyond, verdict } = await verifyPrefix(protocol);
      console.log(
        `      node unreachable: ${outcome.code} (${outcome.message.split("\n")[0].slice(0, 80)}) after ` +
          `${protocol.instance_protocol.length} published states; ${beyond} more on-chain; verdict ${verdict}`,
      );
    });

    it("all connections dropped once (the node stays up): the requests in flight are resent and the run completes", async function () {
      const { outcome, protocol } = await faultyRun(5, () => proxy.dropAll(), { maxInFlight: 4 });
      expect(outcome.message).to.equal("resolved");
      expect(protocol.status).to.equal("succeeded");
      expect(proxy.stats.dropped).to.be.greaterThan(0);
      const { beyond, verdict } = await verifyPrefix(protocol);
      expect(beyond).to.equal(0);
      expect(verdict).to.equal("valid");
    });

    it("connections dropped, then the next two reset on connect: resent with back-off, the run completes", async function () {
      const refusedBefore = proxy.stats.refused;
      const { outcome, protocol } = await faultyRun(
        5,
        () => {
          proxy.resetNext(2);
          proxy.dropAll();
        },
        { maxInFlight: 4 },
      );
      expect(outcome.message).to.equal("resolved");
      expect(protocol.status).to.equal("succeeded");
      expect(proxy.stats.refused - refusedBefore, "both resets happened").to.equal(2);
      const { beyond, verdict } = await verifyPrefix(protocol);
      expect(beyond).to.equal(0);
      expect(verdict).to.equal("valid");
    });

    it("a slow link (every chunk delayed 20 ms) only makes the run slower", async function () {
      proxy.delay(20);
      const model = await loadModel(path.join(EXAMPLES, "refund-request.asl.json"));
      const engine = createEngine({
        engine: "local",
        handlers: path.join(EXAMPLES, "refund-request.handlers.js"),
        skipWaits: true,
      });
      const head = await issuer
        .tracker(engine)
        .run(model, fs.readFileSync(path.join(EXAMPLES, "refund-request.input.json")));
      const protocol = issuer.home.readProtocol(head.instance_hash);
      expect(protocol.status).to.equal("failed"); // the example ends in its Fail state
      const { beyond, verdict } = await verifyPrefix(protocol);
      expect(beyond).to.equal(0);
      expect(verdict).to.equal("valid");
    });
  });
});
