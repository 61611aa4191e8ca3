import "../../src/engine/polyfill";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { Interface, Wallet, id } from "ethers";
import { toBytes32 } from "../../src/chain/hash";
import { devPrivateKey } from "../../src/chain/keys";
import { createEngine, type Engine } from "../../src/engine";
import { StatetrailError } from "../../src/errors";
import { loadModel } from "../../src/model/load";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { anchoringFromOptions } from "../../src/cli/commands/run";
import { Journal } from "../../src/tracker/journal";
import { TransactionSender } from "../../src/tracker/sender";
import { type TrackerOptions } from "../../src/tracker/tracker";
import { renderReport, trustedFromDeployment, verifyProtocol, type VerificationReport } from "../../src/verify";
import { InstanceRegistry__factory, ModelRegistry__factory } from "../../typechain-types";
import { useHardhatNode } from "../helpers/node-process";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");
const registryInterface = new Interface(InstanceRegistry__factory.abi);

function engine(): Engine {
  return createEngine({
    engine: "local",
    handlers: path.join(EXAMPLES, "order-fulfilment.handlers.js"),
    skipWaits: true,
  });
}

/** The local engine, yielding each state `ms` later: runs of one tracker overlap in time. */
function slowEngine(ms: number): Engine {
  const inner = engine();
  return {
    name: inner.name,
    prepare: (model) => inner.prepare(model),
    async *run(model, options) {
      for await (const event of inner.run(model, options)) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        yield event;
      }
    },
  };
}

const INPUT = fs.readFileSync(path.join(EXAMPLES, "order-fulfilment.input.json"));

/** Which registry functions the transactions of a protocol's entries called, by transaction. */
async function callsOf(issuer: TestIssuer, protocol: InstanceProtocol): Promise<Map<string, string>> {
  const calls = new Map<string, string>();
  for (const hash of new Set(protocol.instance_protocol.map((entry) => entry.transaction_hash))) {
    const tx = await issuer.provider.getTransaction(hash);
    calls.set(hash, registryInterface.parseTransaction({ data: tx!.data })!.name);
  }
  return calls;
}

/**
 * The journal's rules (src/tracker/journal.ts): a state is entered before any intent covers it; every
 * transaction's intent comes before its `sent`, and `sent` before its `final`.
 */
function expectJournalInOrder(issuer: TestIssuer, protocol: InstanceProtocol): void {
  const records = Journal.read(issuer.home.journalFile(protocol.instance_hash));
  const entered = new Set<number>();
  const intents: Array<Record<string, unknown>> = [];
  const sent = new Set<string>();
  for (const record of records) {
    switch (record.type) {
      case "entered":
        entered.add(record.seq as number);
        expect(record.state_data, "the journal holds the state bytes").to.be.a("string");
        break;
      case "intent":
        if (record.first_seq !== undefined) {
          for (let seq = record.first_seq as number; seq <= (record.last_seq as number); seq++) {
            expect(entered.has(seq), `state ${seq} entered before its intent`).to.equal(true);
          }
        }
        intents.push(record);
        break;
      case "sent":
        expect(
          intents.some((intent) => intent.action === record.action),
          `an intent for ${record.action} before it was sent`,
        ).to.equal(true);
        sent.add(record.transaction_hash as string);
        break;
      case "final":
        if (["registerState", "registerStates", "anchorBatch"].includes(record.action as string)) {
          expect(sent.has(record.transaction_hash as string), "sent before final").to.equal(true);
        }
        break;
    }
  }
  expect(entered.size).to.equal(protocol.instance_protocol.length);
}

describe("tracker anchoring modes (hardhat node process, HTTPS, local engine)", function () {
  this.timeout(120_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "anchoring" });
  });
  after(async function () {
    await issuer?.close();
  });

  async function verify(protocol: InstanceProtocol): Promise<VerificationReport> {
    return verifyProtocol({
      input: { url: `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol` },
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: null,
      optional: ["V2"],
    });
  }

  async function run(options: Partial<TrackerOptions>): Promise<InstanceProtocol> {
    const model = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    const head = await issuer.tracker(engine(), options).run(model, INPUT);
    return issuer.home.readProtocol(head.instance_hash);
  }

  it("multi: registerStates with the states entered since the last send; verified valid", async function () {
    const protocol = await run({ anchor: "multi" });
    const calls = await callsOf(issuer, protocol);
    expect([...new Set(calls.values())]).to.deep.equal(["registerStates"]);
    expect(calls.size).to.be.lessThan(protocol.instance_protocol.length);
    expect(protocol.instance_protocol.every((entry) => entry.proof === null)).to.equal(true);
    expectJournalInOrder(issuer, protocol);
    const report = await verify(protocol);
    expect(report.verdict, renderReport(report)).to.equal("valid");
  });

  it("batch: two concurrent runs share Merkle roots, end with terminateAnchored, and verify valid", async function () {
    const model = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    const tracker = issuer.tracker(slowEngine(10), { anchor: "batch", batchSize: 7, batchIntervalMs: 200 });
    const heads = await Promise.all([tracker.run(model, INPUT), tracker.run(model, INPUT)]);
    tracker.close();
    const [first, second] = heads.map((head) => issuer.home.readProtocol(head.instance_hash));
    const roots = (protocol: InstanceProtocol) => new Set(protocol.instance_protocol.map((entry) => entry.proof!.root));
    expect(roots(first).size).to.be.greaterThan(1);
    expect(
      [...roots(first)].some((root) => roots(second).has(root)),
      "a root shared by both instances",
    ).to.equal(true);
    for (const protocol of [first, second]) {
      expect([...new Set((await callsOf(issuer, protocol)).values())]).to.deep.equal(["anchorBatch"]);
      const terminated = await issuer.provider.getTransaction(protocol.terminated!.transaction_hash);
      expect(registryInterface.parseTransaction({ data: terminated!.data })!.name).to.equal("terminateAnchored");
      expectJournalInOrder(issuer, protocol);
      const report = await verify(protocol);
      expect(report.verdict, renderReport(report)).to.equal("valid");
      expect(report.steps.find((step) => step.id === "V7")!.detail).to.match(/Merkle-anchored states are exactly/);
    }
  });

  it("per-state, pipelined (8 in flight) with 2 confirmations on a chain mining every 200 ms: valid", async function () {
    await issuer.provider.send("evm_setAutomine", [false]);
    await issuer.provider.send("evm_setIntervalMining", [200]);
    let protocol: InstanceProtocol;
    const early: string[] = [];
    try {
      protocol = await run({
        maxInFlight: 8,
        confirmations: 2,
        onProgress: (event) => {
          if (event.kind !== "final") return;
          // Final means confirmed: the block after the entry's must exist by now.
          void issuer.provider.getBlockNumber().then(async (latest) => {
            const protocolNow = issuer.home.readProtocol(event.instance);
            const entry = protocolNow.instance_protocol[event.seq];
            if (entry && latest < entry.block_nr + 1) early.push(`seq ${event.seq} final in block ${latest}`);
          });
        },
      });
    } finally {
      await issuer.provider.send("evm_setIntervalMining", [0]);
      await issuer.provider.send("evm_setAutomine", [true]);
    }
    expect(early).to.deep.equal([]);
    const blocks = protocol.instance_protocol.map((entry) => entry.block_nr);
    expect(new Set(blocks).size, "several states per block: transactions were in flight together").to.be.lessThan(
      blocks.length,
    );
    expect([...new Set((await callsOf(issuer, protocol)).values())]).to.deep.equal(["registerState"]);
    const report = await verify(protocol);
    expect(report.verdict, renderReport(report)).to.equal("valid");
  });

  describe("TransactionSender", function () {
    async function registry() {
      const signer = new Wallet(devPrivateKey(5), issuer.provider);
      const models = ModelRegistry__factory.connect(issuer.registries.model, signer);
      const instances = InstanceRegistry__factory.connect(issuer.registries.instance, signer);
      const model = id(`sender model ${Date.now()}`);
      const instance = id(`sender instance ${Date.now()}`);
      await (await models.registerModel(model, "")).wait();
      await (await instances.createInstance(instance, model)).wait();
      return { signer, instances, instance };
    }

    it("keeps the nonce order of pipelined transactions (all mined in one block) and waits for confirmations", async function () {
      const { signer, instances, instance } = await registry();
      const sender = new TransactionSender(signer, { maxInFlight: 10, confirmations: 2, errorInterfaces: [] });
      await issuer.provider.send("evm_setAutomine", [false]);
      try {
        let prev = instance;
        const sent = [];
        for (let i = 0; i < 10; i++) {
          const state = id(`sender state ${i}`);
          const data = instances.interface.encodeFunctionData("registerState", [instance, state, prev]);
          sent.push(sender.send({ to: issuer.registries.instance, data }, `state ${i}`, { gasLimit: 60_000n }));
          prev = state;
        }
        const accepted = await Promise.all(sent);
        expect(accepted.map((tx) => tx.nonce)).to.deep.equal(accepted.map((_, i) => accepted[0].nonce + i));
        let final = false;
        const last = accepted[9].receipt.then(() => (final = true));
        await issuer.provider.send("evm_mine", []);
        const mined = await Promise.all(accepted.map((tx) => tx.mined));
        expect(new Set(mined.map((receipt) => receipt.blockNumber)).size).to.equal(1);
        await new Promise((resolve) => setTimeout(resolve, 600));
        expect(final, "not final after one block with 2 confirmations").to.equal(false);
        await issuer.provider.send("evm_mine", []);
        await last;
        const [head] = await instances.instanceOf(signer.address, instance);
        expect(head).to.equal(prev);
      } finally {
        await issuer.provider.send("evm_setAutomine", [true]);
      }
    });

    it("explains a reverted transaction with the registry's custom error", async function () {
      const { signer, instances, instance } = await registry();
      const sender = new TransactionSender(signer, {
        maxInFlight: 4,
        confirmations: 1,
        errorInterfaces: [InstanceRegistry__factory.createInterface()],
      });
      const data = instances.interface.encodeFunctionData("registerState", [instance, id("x"), id("not the head")]);
      // An automining node refuses it when it is sent; a node with a mempool mines it and it fails there.
      const error = await sender
        .send({ to: issuer.registries.instance, data }, "registerState", { gasLimit: 60_000n })
        .then((sent) => sent.receipt.then(() => null))
        .then(
          () => null,
          (caught: unknown) => caught,
        );
      expect(error).to.be.instanceOf(StatetrailError);
      expect((error as StatetrailError).code).to.equal("TX_FAILED");
      expect((error as StatetrailError).message).to.match(/reverted with HeadMismatch\(/);
    });

    it("refuses --max-in-flight and --confirmations below 1", function () {
      const signer = new Wallet(devPrivateKey(5), issuer.provider);
      for (const options of [
        { maxInFlight: 0, confirmations: 1 },
        { maxInFlight: 1, confirmations: 0 },
      ]) {
        expect(() => new TransactionSender(signer, { ...options, errorInterfaces: [] }))
          .to.throw(StatetrailError)
          .with.property("code", "INVALID_ARGUMENT");
      }
    });
  });

  it("run's --anchor, --batch-size and --batch-interval become tracker options; bad values are refused", function () {
    expect(anchoringFromOptions({ anchor: "batch", batchSize: "500", batchInterval: "2.5" })).to.deep.equal({
      anchor: "batch",
      batchSize: 500,
      batchIntervalMs: 2_500,
    });
    for (const bad of [
      { anchor: "merkle", batchSize: "10", batchInterval: "1" },
      { anchor: "batch", batchSize: "ten", batchInterval: "1" },
      { anchor: "batch", batchSize: "10", batchInterval: "0" },
    ]) {
      expect(() => anchoringFromOptions(bad))
        .to.throw(StatetrailError)
        .with.property("code", "INVALID_ARGUMENT");
    }
  });

  it("the terminated protocol's head is the on-chain head in every mode", async function () {
    const registry = InstanceRegistry__factory.connect(issuer.registries.instance, issuer.provider);
    for (const anchor of ["per-state", "multi", "batch"] as const) {
      const protocol = await run({ anchor, batchSize: 5 });
      const [head, status] = await registry.instanceOf(
        issuer.identity.record.address,
        toBytes32(protocol.instance_hash),
      );
      expect(head, anchor).to.equal(toBytes32(protocol.head.state_hash));
      expect(status, anchor).to.equal(2n);
    }
  });
});
