import { expect } from "chai";
import { headOf } from "../../src/protocol/pages";
import { type Fetcher } from "../../src/verify/types";
import { ethers } from "hardhat";
import { JsonRpcProvider, Network, type Provider } from "ethers";
import {
  renderReport,
  renderReportJson,
  type StepId,
  type StepResult,
  type VerificationReport,
} from "../../src/verify";
import {
  deployRegistries,
  fakeCertificate,
  forgeRun,
  forgeScenario,
  ISSUER_ORIGIN,
  publish,
  resign,
  verifyForged,
} from "../helpers/forge";

function statuses(report: VerificationReport): Record<string, string> {
  return Object.fromEntries(report.steps.map((step) => [step.id, step.status]));
}

function step(report: VerificationReport, id: StepId): StepResult {
  return report.steps.find((candidate) => candidate.id === id)!;
}

/** Hardhat's provider with its `getLogs` calls counted. */
function countingProvider(): { provider: Provider; calls: { getLogs: number } } {
  const calls = { getLogs: 0 };
  const target = ethers.provider;
  const provider = new Proxy(target, {
    get(object, property) {
      const value = Reflect.get(object, property, object) as unknown;
      if (property === "getLogs") {
        return (...args: Parameters<Provider["getLogs"]>) => {
          calls.getLogs += 1;
          return target.getLogs(...args);
        };
      }
      return typeof value === "function" ? value.bind(object) : value;
    },
  });
  return { provider, calls };
}

describe("verifyProtocol", function () {
  describe("inputs", function () {
    it("verifies a protocol given as an object, capturing the certificate from the issuer's server", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { protocol: run.protocol, name: "protocol.json" });
      expect(report.verdict).to.equal("valid");
      expect(report.source).to.equal("protocol.json");
      expect(step(report, "V1").detail).to.contain(`publishes it at ${run.url}`);
    });

    it("verifies a protocol given as JSON text", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { protocol: JSON.stringify(run.protocol) });
      expect(report.verdict).to.equal("valid");
    });

    it("verifies a head given alone (its pages read from the issuer's server), and a whole protocol (its pages from memory)", async function () {
      const { env, run } = await forgeScenario();
      const pageRequests = (): string[] => env.server.requests.filter((url) => url.includes("/protocol/pages/"));
      const head = await verifyForged(env, { protocol: JSON.stringify(headOf(run.protocol)), name: "head.json" });
      expect(head.verdict, renderReport(head)).to.equal("valid");
      expect(head.subject!.states).to.equal(6);
      expect(pageRequests()).to.have.length(3);
      env.server.requests.length = 0;
      const whole = await verifyForged(env, { protocol: JSON.stringify(run.protocol), name: "whole.json" });
      expect(whole.verdict, renderReport(whole)).to.equal("valid");
      expect(pageRequests()).to.deep.equal([]);
    });

    it("fails V1 when a file's protocol is not the one its issuer's server publishes", async function () {
      const { env, run } = await forgeScenario();
      const other = await forgeRun(env, { label: "another run" });
      env.server.serve(run.url, JSON.stringify(headOf(other.protocol)));
      const report = await verifyForged(env, { protocol: run.protocol });
      expect(report.verdict).to.equal("invalid");
      expect(step(report, "V1").detail).to.contain("does not publish this instance's protocol");
    });

    it("fails V1 for a protocol URL that is not https", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url.replace("https:", "http:") });
      expect(report.verdict).to.equal("invalid");
      expect(step(report, "V1").status).to.equal("fail");
      expect(step(report, "V1").code).to.equal("TLS_FAILED");
      expect(report.steps.filter((s) => s.id !== "V1").every((s) => s.status === "skip")).to.equal(true);
    });

    it("fails V1 for a protocol served from another origin than its issuer url", async function () {
      const { env, run } = await forgeScenario();
      const url = env.server.serve(
        `https://mirror.example/instances/${run.instanceHash}/protocol`,
        JSON.stringify(headOf(run.protocol)),
      );
      const report = await verifyForged(env, { url });
      expect(report.verdict).to.equal("invalid");
      expect(step(report, "V1").detail).to.contain(`but its issuer url is ${ISSUER_ORIGIN}`);
    });

    it("fails V1 when the served protocol is not JSON, and skips the rest", async function () {
      const { env, run } = await forgeScenario();
      env.server.serve(run.url, "<html>not found</html>");
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict).to.equal("invalid");
      expect(step(report, "V1").code).to.equal("INVALID_JSON");
      expect(report.subject).to.equal(null);
      expect(step(report, "V8")).to.include({ status: "skip", detail: "no protocol to verify (see V1)" });
    });

    it("fails V1 when the served protocol does not match the schema", async function () {
      const { env, run } = await forgeScenario();
      env.server.serve(run.url, JSON.stringify({ ...run.protocol, instance_protocol: "none" }));
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict).to.equal("invalid");
      expect(step(report, "V1").code).to.equal("PROTOCOL_INVALID");
      expect(step(report, "V1").detail).to.contain("instance_protocol");
    });
  });

  describe("runs", function () {
    it("verifies a running instance", async function () {
      const { env } = await forgeScenario();
      const run = await forgeRun(env, { label: "running", status: "running", states: 4, perState: 2 });
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict, renderReport(report)).to.equal("valid");
      expect(step(report, "V7").detail).to.contain("status running");
    });

    it("verifies an instance with no state yet (head = instance hash, seq -1)", async function () {
      const { env } = await forgeScenario();
      const run = await forgeRun(env, { label: "empty", status: "running", states: 0 });
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict, renderReport(report)).to.equal("valid");
      expect(step(report, "V6").detail).to.equal("the protocol lists no states");
    });

    it("verifies a failed instance registered entirely with registerStates", async function () {
      const { env } = await forgeScenario();
      const run = await forgeRun(env, { label: "failed", status: "failed", states: 5, perState: 0 });
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict, renderReport(report)).to.equal("valid");
      expect(step(report, "V6").detail).to.contain("0 StateRegistered, 5 in StatesRegistered");
    });
  });

  describe("could not verify", function () {
    it("reports a missing state body as an error of V6, verdict could-not-verify (exit 2)", async function () {
      const { env, run } = await forgeScenario();
      env.server.remove(run.protocol.instance_protocol[3].state_data);
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict).to.equal("could-not-verify");
      expect(report.exit_code).to.equal(2);
      expect(step(report, "V6")).to.include({ status: "error" });
      expect(step(report, "V6").detail).to.match(/seq 3 "Step3": fetching .*HTTP 404/);
    });

    it("reports missing model bytes as an error of V4", async function () {
      const { env, run } = await forgeScenario();
      env.server.remove(env.model.url);
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict).to.equal("could-not-verify");
      expect(step(report, "V4").status).to.equal("error");
      expect(step(report, "V4").code).to.equal("FETCH_FAILED");
    });

    it("reports an unreachable protocol URL as an error of V1", async function () {
      const { env, run } = await forgeScenario();
      env.server.remove(run.url);
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict).to.equal("could-not-verify");
      expect(step(report, "V1").status).to.equal("error");
    });

    it("reports a server that changes its certificate mid-verification as an error (the pin refuses it)", async function () {
      const { env, run } = await forgeScenario();
      const { notBefore, notAfter } = env.server.certificate;
      const report = await verifyForged(
        env,
        { url: run.url },
        {
          onStep: (result) => {
            if (result.id === "V1") env.server.certificate = fakeCertificate("swapped", notBefore, notAfter);
          },
        },
      );
      expect(report.verdict).to.equal("could-not-verify");
      expect(step(report, "V4").code).to.equal("TLS_FAILED");
    });

    it("does not call a protocol valid when a required step is skipped (ENS not configured, V2 required)", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url }, { optional: [] });
      expect(step(report, "V2")).to.include({ status: "skip", required: true });
      expect(report.verdict).to.equal("could-not-verify");
      expect(report.exit_code).to.equal(2);
    });

    it("still calls it invalid when something fails and something else could not be checked", async function () {
      const { env, run } = await forgeScenario();
      env.server.remove(run.protocol.instance_protocol[3].state_data);
      const report = await verifyForged(env, { url: publish(env.server, await resign(run.protocol, env.other)) });
      expect(statuses(report)).to.include({ V6: "error", V8: "fail" });
      expect(report.verdict).to.equal("invalid");
    });

    it("reports an unreachable RPC endpoint as errors of the chain steps", async function () {
      const { env, run } = await forgeScenario();
      const provider = new JsonRpcProvider("http://127.0.0.1:9", Network.from(env.chainId), { staticNetwork: true });
      try {
        const report = await verifyForged(env, { url: run.url }, { provider, logRetries: 0 });
        expect(report.verdict).to.equal("could-not-verify");
        expect(step(report, "V0")).to.include({ status: "error", code: "RPC_UNREACHABLE" });
        expect(statuses(report)).to.deep.equal({
          V0: "error",
          V1: "pass",
          V2: "skip",
          V3: "error",
          V4: "error",
          V5: "error",
          V6: "error",
          V7: "error",
          V8: "pass",
          V9: "skip",
        });
        expect(report.block_number).to.equal(null);
      } finally {
        provider.destroy();
      }
    });

    it("refuses a trusted setup whose InstanceRegistry checks models against another ModelRegistry", async function () {
      const { env, run } = await forgeScenario();
      const registries = await deployRegistries(env.other);
      const trusted = {
        ...env.trusted,
        registries: { ...env.trusted.registries, model: await registries.models.getAddress() },
      };
      const report = await verifyForged(env, { url: run.url }, { trusted });
      expect(step(report, "V0").status).to.equal("fail");
      const consistent = await verifyForged(
        env,
        { url: publish(env.server, await resign({ ...run.protocol, registries: trusted.registries }, env.issuer)) },
        { trusted },
      );
      expect(step(consistent, "V0").status, renderReport(consistent)).to.equal("error");
      expect(step(consistent, "V0").detail).to.contain("checks models against");
      expect(consistent.verdict).to.equal("invalid");
    });

    it("refuses an RPC endpoint that serves another chain than the trusted deployment (WRONG_CHAIN)", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url }, { trusted: { ...env.trusted, chainId: 11155111 } });
      expect(report.verdict).to.equal("could-not-verify");
      expect(step(report, "V0")).to.include({ status: "error", code: "WRONG_CHAIN" });
    });
  });

  describe("efficiency", function () {
    it("fetches state bodies with bounded concurrency (8 by default, or as configured), pages a bounded read-ahead", async function () {
      const { env } = await forgeScenario();
      const run = await forgeRun(env, { label: "wide", states: 24, perState: 2 });
      env.server.delayMs = 5;
      const inFlight = { states: 0, pages: 0, maxStates: 0, maxPages: 0 };
      const fetcher: Fetcher = async (url, request) => {
        const kind = url.includes("/states/") ? "states" : url.includes("/pages/") ? "pages" : null;
        if (kind === "states") inFlight.maxStates = Math.max(inFlight.maxStates, ++inFlight.states);
        if (kind === "pages") inFlight.maxPages = Math.max(inFlight.maxPages, ++inFlight.pages);
        try {
          return await env.server.fetcher(url, request);
        } finally {
          if (kind) inFlight[kind] -= 1;
        }
      };
      const report = await verifyForged(env, { url: run.url }, { fetcher });
      expect(report.verdict).to.equal("valid");
      expect(inFlight.maxStates).to.be.within(2, 8);
      expect(inFlight.maxPages).to.be.within(1, 3); // the page being read and two ahead
      inFlight.maxStates = 0;
      const narrow = await verifyForged(env, { url: run.url }, { concurrency: 3, fetcher });
      expect(narrow.verdict).to.equal("valid");
      expect(inFlight.maxStates).to.equal(3);
    });

    it("reads the instance's events in a chunk or two of blocks, not one eth_getLogs call per state or transaction", async function () {
      const { env } = await forgeScenario();
      const run = await forgeRun(env, { label: "long", states: 30, perState: 10 });
      const { provider, calls } = countingProvider();
      const report = await verifyForged(env, { url: run.url }, { provider });
      expect(report.verdict).to.equal("valid");
      // The first chunk is 8 blocks and chunks then widen (logs.ts): the scenario's dozen-odd blocks take two calls;
      // one per transaction would be 3, one per state 30.
      expect(calls.getLogs).to.be.within(1, 2);
    });

    it("reads the logs in chunks of the configured size", async function () {
      const { env, run } = await forgeScenario();
      const { provider, calls } = countingProvider();
      const report = await verifyForged(env, { url: run.url }, { provider, logChunkSize: 2 });
      expect(report.verdict).to.equal("valid");
      const span = report.block_number! - run.protocol.created.block_nr + 1;
      expect(calls.getLogs).to.equal(Math.ceil(span / 2));
    });
  });

  describe("report", function () {
    it("reports every step through onStep as it completes, V1 first", async function () {
      const { env, run } = await forgeScenario();
      const seen: string[] = [];
      const report = await verifyForged(env, { url: run.url }, { onStep: (result) => seen.push(result.id) });
      expect(seen).to.deep.equal(["V1", "V0", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9"]);
      expect(report.steps.map((result) => result.id)).to.deep.equal([
        "V0",
        "V1",
        "V2",
        "V3",
        "V4",
        "V5",
        "V6",
        "V7",
        "V8",
        "V9",
      ]);
    });

    it("renders one line per check then the verdict, and JSON with every check", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url });
      const text = renderReport(report);
      expect(text).to.match(/^PASS {2}V6 {2}every state/m);
      expect(text).to.match(/^SKIP {2}V2 {2}ENS .* \(optional\)$/m);
      expect(text).to.match(/verdict: VALID: every required check passed \(exit 0\)\n$/);
      const json = JSON.parse(renderReportJson(report)) as VerificationReport;
      expect(json.verdict).to.equal("valid");
      expect(json.subject).to.include({ instance_hash: run.instanceHash, states: 6, status: "succeeded" });
      for (const result of json.steps) expect(result).to.include.keys("id", "title", "status", "detail", "required");
    });
  });
});
