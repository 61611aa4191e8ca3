import fs from "node:fs";
import { expect } from "chai";
import { createEngine } from "../../../src/engine";
import { LocalEngine } from "../../../src/engine/local";
import { startSfnEndpoint } from "../../../src/engine/sfn-endpoint";
import { type Engine } from "../../../src/engine/types";
import { loadModel, loadModelFromBytes } from "../../../src/model/load";
import { type LoadedModel } from "../../../src/model/types";
import { type InstanceProtocol } from "../../../src/protocol/schema";
import {
  ensReaderFromProvider,
  protocolUrl,
  renderReport,
  trustedFromDeployment,
  verifyProtocol,
  type VerificationReport,
} from "../../../src/verify";
import { setupIssuer, type TestIssuer } from "../../helpers/issuer";
import { useHardhatNode } from "../../helpers/node-process";
import { example } from "./helpers";
import { FIXTURES } from "./models";

const read = (name: string): Buffer => fs.readFileSync(example(name));

describe("V9 end to end: tracked runs verified over HTTPS conform (hardhat node process, real tracker)", function () {
  this.timeout(120_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "conformance" });
  });
  after(async function () {
    await issuer?.close();
  });

  async function verify(protocol: Pick<InstanceProtocol, "instance_hash">): Promise<VerificationReport> {
    return verifyProtocol({
      input: { url: protocolUrl(issuer.identity.record.url, protocol.instance_hash) },
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: ensReaderFromProvider(issuer.provider),
    });
  }

  async function trackAndVerify(engine: Engine, model: LoadedModel, input: Buffer, status: string): Promise<string> {
    const protocol = await issuer.tracker(engine).run(model, input);
    expect(protocol.status).to.equal(status);
    const report = await verify(protocol);
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid");
    const v9 = report.steps.find((step) => step.id === "V9")!;
    expect(v9.status, shown).to.equal("pass");
    return v9.detail;
  }

  const local = (handlers: string) => new LocalEngine({ handlersModule: example(handlers), skipWaits: true });

  it("every example: order-fulfilment (card, declined card, invoice), batch-scoring, refund-request, warehouse-sync", async function () {
    const order = await loadModel(example("order-fulfilment.asl.json"));
    const base = JSON.parse(read("order-fulfilment.input.json").toString("utf8")) as Record<string, unknown>;
    const orders: [Record<string, unknown>, string][] = [
      [{ ...base, orderId: "o-e2e-card" }, "succeeded"],
      [{ ...base, orderId: "o-e2e-declined", payment: { method: "card", card: "4000000000000002" } }, "failed"],
      [{ ...base, orderId: "o-e2e-invoice", payment: { method: "invoice" } }, "succeeded"],
    ];
    const details: string[] = [];
    for (const [input, status] of orders) {
      details.push(
        await trackAndVerify(local("order-fulfilment.handlers.js"), order, Buffer.from(JSON.stringify(input)), status),
      );
    }
    expect(details[0]).to.contain("1 retry").and.contain('ended in Succeed state "Done"');
    expect(details[1])
      .to.contain("1 caught error")
      .and.contain('ended in Fail state "Payment declined", status failed');
    expect(details[2]).to.contain('Wait "Wait for credit check"');

    const batch = await trackAndVerify(
      local("batch-scoring.handlers.js"),
      await loadModel(example("batch-scoring.asl.json")),
      read("batch-scoring.input.json"),
      "succeeded",
    );
    expect(batch).to.contain("24 of 24 Choice decisions re-evaluated").and.contain("1 Map (24 iterations; 1 counted");
    await trackAndVerify(
      local("refund-request.handlers.js"),
      await loadModel(example("refund-request.asl.json")),
      read("refund-request.input.json"),
      "failed",
    );
    const nested = await trackAndVerify(
      local("warehouse-sync.handlers.js"),
      await loadModel(example("warehouse-sync.asl.json")),
      read("warehouse-sync.input.json"),
      "succeeded",
    );
    expect(nested).to.contain("3 Maps (7 iterations; 3 counted against their items), 1 Parallel");
  });

  it("own models: Retry, Catch (and a retried Map), nested Map in Parallel, Fail, an uncaught error", async function () {
    for (const fixture of Object.values(FIXTURES)) {
      const model = loadModelFromBytes(Buffer.from(JSON.stringify(fixture.model, null, 2)));
      const engine = new LocalEngine({ handlers: fixture.handlers(), skipWaits: true });
      await trackAndVerify(engine, model, Buffer.from(JSON.stringify(fixture.input)), fixture.status);
    }
  });

  it("a run on the AWS engine (real SFNClient, in-process endpoint), states from the execution history", async function () {
    const endpoint = await startSfnEndpoint({ handlers: example("order-fulfilment.handlers.js"), skipWaits: true });
    try {
      const aws = createEngine({
        engine: "aws",
        endpoint: endpoint.url,
        region: endpoint.region,
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
        roleArn: "arn:aws:iam::123456789012:role/statetrail-test",
        pollMs: 20,
      });
      const input = { ...JSON.parse(read("order-fulfilment.input.json").toString("utf8")), orderId: "o-e2e-aws" };
      const detail = await trackAndVerify(
        aws,
        await loadModel(example("order-fulfilment.asl.json")),
        Buffer.from(JSON.stringify(input)),
        "succeeded",
      );
      expect(detail).to.contain("1 retry");
    } finally {
      await endpoint.close();
    }
  });
});
