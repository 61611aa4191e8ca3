import "../../src/engine/polyfill";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { Interface, Wallet, type TransactionReceipt } from "ethers";
import { toBytes32, fromBytes32, sha256Hex } from "../../src/chain/hash";
import { createEngine, startSfnEndpoint } from "../../src/engine";
import { loadHandlerModule, startInterpreter } from "../../src/engine/local";
import { buildContextObject } from "../../src/engine/context";
import { loadModel, loadModelFromBytes } from "../../src/model/load";
import { pinnedFetch } from "../../src/net/pinned-fetch";
import { readInputDocument, readStateDocument } from "../../src/protocol/disclosure";
import { decodePage, pageCount } from "../../src/protocol/pages";
import { parseHead, type InstanceProtocol, type ProtocolEntry, type ProtocolHead } from "../../src/protocol/schema";
import { recoverProtocolSigner } from "../../src/protocol/signing";
import { CertificateRegistry__factory, InstanceRegistry__factory } from "../../typechain-types";
import { devPrivateKey } from "../../src/chain/keys";
import { registerCertificate } from "../../src/identity/registration";
import { useHardhatNode } from "../helpers/node-process";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");
const example = (name: string) => path.join(EXAMPLES, name);
const instanceInterface = new Interface(InstanceRegistry__factory.abi);

function localEngine(handlers: string) {
  return createEngine({ engine: "local", handlers: example(handlers), skipWaits: true });
}

/**
 * Fetches the protocol over HTTPS, pinned to the fingerprint registered on-chain for the issuer: the head, then each
 * page, chained from the instance hash to the head's accumulator.
 */
async function fetchPinned(
  issuer: TestIssuer,
  protocol: Pick<ProtocolHead, "instance_hash">,
): Promise<InstanceProtocol> {
  const registry = issuer.identity.record;
  const [certificate] = await CertificateRegistry__factory.connect(
    issuer.registries.certificate,
    issuer.provider,
  ).certificateOf(toBytes32(registry.certificate_fingerprint), registry.address);
  expect(certificate.holder).to.equal(registry.address);
  const url = `${registry.url}/instances/${protocol.instance_hash}/protocol`;
  const response = await pinnedFetch(url, { fingerprint: registry.certificate_fingerprint });
  expect(response.certificate.fingerprint).to.equal(registry.certificate_fingerprint);
  const head = parseHead(response.body);
  const entries: ProtocolEntry[] = [];
  let accumulator = head.instance_hash;
  for (let index = 0; index < pageCount(head.entries, head.page_size); index += 1) {
    const page = await pinnedFetch(`${url}/pages/${index}`, { fingerprint: registry.certificate_fingerprint });
    const decoded = decodePage(page.body, {
      instanceHash: head.instance_hash,
      index,
      accumulatorBefore: accumulator,
      wanted: head.entries - entries.length,
    });
    entries.push(...decoded.entries);
    accumulator = decoded.accumulatorAfter;
  }
  expect(entries).to.have.length(head.entries);
  expect(accumulator).to.equal(head.accumulator);
  return { ...head, instance_protocol: entries };
}

/** Checks every entry against its receipt, its block and the served bytes, and the chain links. */
async function assertConfirmedByChain(issuer: TestIssuer, protocol: InstanceProtocol): Promise<void> {
  const fingerprint = issuer.identity.record.certificate_fingerprint;
  let prev = protocol.instance_hash;
  for (const entry of protocol.instance_protocol) {
    const receipt = (await issuer.provider.getTransactionReceipt(entry.transaction_hash)) as TransactionReceipt;
    expect(receipt, `receipt of #${entry.seq}`).to.not.equal(null);
    expect(receipt.blockNumber).to.equal(entry.block_nr);
    const block = await issuer.provider.getBlock(entry.block_nr);
    expect(block?.timestamp).to.equal(entry.timestamp);
    const events = receipt.logs
      .filter((log) => log.address.toLowerCase() === issuer.registries.instance.toLowerCase())
      .map((log) => instanceInterface.parseLog(log))
      .filter((event) => event?.name === "StateRegistered");
    expect(events, `StateRegistered in ${entry.transaction_hash}`).to.have.length(1);
    const [issuerAddress, instanceHash, stateHash, prevStateHash] = events[0]!.args;
    expect(issuerAddress).to.equal(issuer.identity.record.address);
    expect(fromBytes32(instanceHash)).to.equal(protocol.instance_hash);
    expect(fromBytes32(stateHash)).to.equal(entry.state_hash);
    expect(fromBytes32(prevStateHash)).to.equal(entry.prev_state_hash);
    expect(entry.prev_state_hash, `link of #${entry.seq}`).to.equal(prev);
    const body = await pinnedFetch(entry.state_data, { fingerprint });
    // The state document: its data line hashes to the registered state hash, its disclosures match its digests.
    const read = readStateDocument(body.body);
    expect(sha256Hex(read.dataBytes), `bytes of #${entry.seq}`).to.equal(entry.state_hash);
    expect(read.redacted, `fields of #${entry.seq} (an open server discloses all)`).to.deep.equal([]);
    prev = entry.state_hash;
  }
  const registry = InstanceRegistry__factory.connect(issuer.registries.instance, issuer.provider);
  const [head, status] = await registry.instanceOf(issuer.identity.record.address, toBytes32(protocol.instance_hash));
  expect(fromBytes32(head)).to.equal(protocol.head.state_hash);
  expect(protocol.head.state_hash).to.equal(prev);
  expect(Number(status)).to.equal({ succeeded: 2, failed: 3, aborted: 4, running: 1 }[protocol.status]);
}

/**
 * The number of StateEntered events aws-local-stepfunctions logs for a run, nested Map iterations and
 * Parallel branches included (read through the interpreter's complete event stream, not the engine's mapping).
 */
async function libraryStateEntered(model: string, handlers: string, input: unknown): Promise<number> {
  const definition = (await loadModel(example(model))).definition;
  const module = loadHandlerModule(example(handlers));
  const resolved = new Map(Object.entries(module).map(([name, handler]) => [name, { handler, resource: name }]));
  const run = startInterpreter(definition, input, {
    handlers: resolved,
    context: buildContextObject({ input, stateMachineName: "count", executionName: "count" }),
    skipWaits: true,
  });
  let entered = 0;
  for await (const { event } of run.events) if (event.type === "StateEntered") entered += 1;
  return entered;
}

describe("tracked run end to end (hardhat node process, HTTPS, local engine)", function () {
  this.timeout(180_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url);
  });
  after(async function () {
    await issuer?.close();
  });

  it("registers every state of the demo model and publishes a protocol the chain confirms", async function () {
    const model = await loadModel(example("order-fulfilment.asl.json"));
    const inputBytes = fs.readFileSync(example("order-fulfilment.input.json"));
    const head = await issuer.tracker(localEngine("order-fulfilment.handlers.js")).run(model, inputBytes);
    const protocol = issuer.home.readProtocol(head.instance_hash);
    expect(protocol.status).to.equal("succeeded");
    expect(protocol.instance_protocol.length).to.be.greaterThan(5);
    expect(head.entries).to.equal(protocol.instance_protocol.length);

    const served = await fetchPinned(issuer, protocol);
    expect(served).to.deep.equal(protocol);
    expect(served.page_size).to.equal(1024);
    expect(recoverProtocolSigner(served)).to.equal(issuer.identity.record.address);
    expect(protocol.instance_protocol.map((e) => e.seq)).to.deep.equal(protocol.instance_protocol.map((_, i) => i));
    expect(protocol.instance_protocol.at(-1)?.state_type).to.equal("ExecutionSucceeded");
    await assertConfirmedByChain(issuer, served);

    // The published input and the nonce recompute the registered instance hash.
    const inputServed = await pinnedFetch(protocol.instance_data, {
      fingerprint: issuer.identity.record.certificate_fingerprint,
    });
    expect(readInputDocument(inputServed.body, protocol.input_digest)?.equals(inputBytes)).to.equal(true);
  });

  it("tracks a 24-iteration Map with nothing missed: one entry per StateEntered, plus the end", async function () {
    const input = { batchId: "b-e2e" };
    const model = await loadModel(example("batch-scoring.asl.json"));
    // Pages of 16 entries: the protocol is served as several closed pages and an open one.
    const head = await issuer
      .tracker(localEngine("batch-scoring.handlers.js"), { pageSize: 16 })
      .run(model, Buffer.from(JSON.stringify(input)));
    const protocol = await fetchPinned(issuer, head);
    expect(protocol.page_size).to.equal(16);
    expect(pageCount(protocol.instance_protocol.length, 16)).to.be.greaterThan(3);
    expect(protocol).to.deep.equal(issuer.home.readProtocol(head.instance_hash));
    const entered = await libraryStateEntered("batch-scoring.asl.json", "batch-scoring.handlers.js", input);
    expect(entered).to.be.greaterThan(24 * 2);
    expect(protocol.instance_protocol).to.have.length(entered + 1);
    const iterations = new Set(
      protocol.instance_protocol.filter((e) => e.state_name === "Score").map((e) => e.state_data),
    );
    expect(iterations.size).to.equal(24);
    await assertConfirmedByChain(issuer, await fetchPinned(issuer, protocol));
  });

  it("tracks a Map nested in a Map in a Parallel branch with nothing missed", async function () {
    const inputBytes = fs.readFileSync(example("warehouse-sync.input.json"));
    const model = await loadModel(example("warehouse-sync.asl.json"));
    const protocol = await fetchPinned(
      issuer,
      await issuer.tracker(localEngine("warehouse-sync.handlers.js")).run(model, inputBytes),
    );
    const entered = await libraryStateEntered(
      "warehouse-sync.asl.json",
      "warehouse-sync.handlers.js",
      JSON.parse(inputBytes.toString("utf8")),
    );
    expect(protocol.instance_protocol).to.have.length(entered + 1);
    const nested = await Promise.all(
      protocol.instance_protocol.map(async (entry) => {
        const body = await pinnedFetch(entry.state_data, {
          fingerprint: issuer.identity.record.certificate_fingerprint,
        });
        return readStateDocument(body.body).data.iteration_path.length;
      }),
    );
    expect(Math.max(...nested)).to.be.greaterThanOrEqual(3);
    await assertConfirmedByChain(issuer, await fetchPinned(issuer, protocol));
  });

  it("records a failed run: the Fail state, then the failed end, terminated as Failed", async function () {
    const model = await loadModel(example("refund-request.asl.json"));
    const inputBytes = fs.readFileSync(example("refund-request.input.json"));
    const protocol = await fetchPinned(
      issuer,
      await issuer.tracker(localEngine("refund-request.handlers.js")).run(model, inputBytes),
    );
    expect(protocol.status).to.equal("failed");
    const types = protocol.instance_protocol.map((e) => e.state_type);
    expect(types.slice(-2)).to.deep.equal(["Fail", "ExecutionFailed"]);
    await assertConfirmedByChain(issuer, await fetchPinned(issuer, protocol));
  });

  it("tracks the same model on the AWS engine (real SFNClient over HTTP) with the same states as locally", async function () {
    const endpoint = await startSfnEndpoint({ handlers: example("warehouse-sync.handlers.js"), skipWaits: true });
    try {
      const model = await loadModel(example("warehouse-sync.asl.json"));
      const inputBytes = fs.readFileSync(example("warehouse-sync.input.json"));
      const aws = createEngine({
        engine: "aws",
        endpoint: endpoint.url,
        region: endpoint.region,
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
        roleArn: "arn:aws:iam::123456789012:role/statetrail-test",
        pollMs: 20,
        pageSize: 5,
      });
      const remote = await fetchPinned(issuer, await issuer.tracker(aws).run(model, inputBytes));
      const local = await fetchPinned(
        issuer,
        await issuer.tracker(localEngine("warehouse-sync.handlers.js")).run(model, inputBytes),
      );
      expect(remote.status).to.equal("succeeded");
      const shape = async (protocol: InstanceProtocol) =>
        (
          await Promise.all(
            protocol.instance_protocol.map(async (entry) => {
              const body = await pinnedFetch(entry.state_data, {
                fingerprint: issuer.identity.record.certificate_fingerprint,
              });
              const { data } = readStateDocument(body.body);
              return `${data.state_type} ${data.state_name} ${JSON.stringify(data.iteration_path)}`;
            }),
          )
        ).sort();
      expect(await shape(remote)).to.deep.equal(await shape(local));
      await assertConfirmedByChain(issuer, await fetchPinned(issuer, remote));
    } finally {
      await endpoint.close();
    }
  });

  describe("bad input gets a coded error and registers nothing", function () {
    async function nonce(): Promise<number> {
      return issuer.provider.getTransactionCount(issuer.identity.record.address, "latest");
    }

    async function expectCode(action: () => Promise<unknown>, code: string): Promise<void> {
      const before = await nonce();
      let caught: unknown;
      try {
        await action();
      } catch (error) {
        caught = error;
      }
      expect(caught, `expected ${code}`).to.be.instanceOf(Error);
      expect((caught as { code?: string }).code).to.equal(code);
      expect(await nonce(), "no transaction was sent").to.equal(before);
    }

    it("invalid ASL", async function () {
      const bad = Buffer.from(JSON.stringify({ StartAt: "A", States: { A: { Type: "Pass", Next: "Nowhere" } } }));
      await expectCode(async () => {
        const model = loadModelFromBytes(bad, { source: "bad.asl.json" });
        await issuer.tracker(localEngine("order-fulfilment.handlers.js")).run(model, Buffer.from("{}"));
      }, "ASL_INVALID");
    });

    it("invalid input JSON", async function () {
      const model = await loadModel(example("refund-request.asl.json"));
      await expectCode(
        () => issuer.tracker(localEngine("refund-request.handlers.js")).run(model, Buffer.from("{not json")),
        "INVALID_JSON",
      );
    });

    it("a Task with no handler, caught before the run starts", async function () {
      const model = await loadModel(example("order-fulfilment.asl.json"));
      await expectCode(
        () => issuer.tracker(createEngine({ engine: "local", handlers: {} })).run(model, Buffer.from("{}")),
        "TASK_HANDLER_MISSING",
      );
    });

    it("a certificate whose fingerprint is not registered", async function () {
      const model = await loadModel(example("refund-request.asl.json"));
      const identity = { ...issuer.identity.record, certificate_fingerprint: sha256Hex("not registered") };
      await expectCode(
        () => issuer.tracker(localEngine("refund-request.handlers.js"), { identity }).run(model, Buffer.from("{}")),
        "CERT_NOT_REGISTERED",
      );
    });

    it("a page size out of range (0, 16,385, not an integer)", async function () {
      const model = await loadModel(example("refund-request.asl.json"));
      for (const pageSize of [0, 16_385, 2.5]) {
        await expectCode(
          () => issuer.tracker(localEngine("refund-request.handlers.js"), { pageSize }).run(model, Buffer.from("{}")),
          "INVALID_ARGUMENT",
        );
      }
    });

    it("insufficient funds", async function () {
      // A key with a certificate registered for it (relayed by someone else) but no ether.
      const model = await loadModel(example("refund-request.asl.json"));
      const pauper = Wallet.createRandom().connect(issuer.provider);
      const fingerprint = sha256Hex(`certificate of ${pauper.address}`);
      const now = (await issuer.provider.getBlock("latest"))!.timestamp;
      await registerCertificate(
        CertificateRegistry__factory.connect(issuer.registries.certificate, issuer.provider),
        pauper,
        { fingerprint, notBefore: now - 60, notAfter: now + 86_400 },
        { relayer: new Wallet(devPrivateKey(1), issuer.provider) },
      );
      const identity = { ...issuer.identity.record, address: pauper.address, certificate_fingerprint: fingerprint };
      const tracker = issuer.tracker(localEngine("refund-request.handlers.js"), { signer: pauper, identity });
      let caught: unknown;
      try {
        await tracker.run(model, Buffer.from("{}"));
      } catch (error) {
        caught = error;
      }
      expect((caught as { code?: string }).code).to.equal("INSUFFICIENT_FUNDS");
      expect(await issuer.provider.getTransactionCount(pauper.address)).to.equal(0);
    });
  });
});
