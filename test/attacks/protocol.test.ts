/**
 * Attacks on the protocol, transport and binding layers of the verifier (V1, V3, V6–V8, pages, mirrors,
 * selective disclosure, the binding of the verdict to the question), by a dishonest issuer or whoever answers
 * at the URLs the auditor reads. Each test names the attack and asserts the correct behaviour: never "valid".
 * Everything runs the real verifier (verifyProtocol) on protocols forged on the in-process chain
 * (test/helpers/forge.ts); the attacks already covered by test/verify/* are not repeated here.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import { toBytes32, type HexHash } from "../../src/chain/hash";
import { StatetrailError } from "../../src/errors";
import { encodePages, headOf, nextAccumulator, pageHeaderLine } from "../../src/protocol/pages";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { signHead } from "../../src/protocol/signing";
import { renderReport, type StepId, type StepResult, type VerificationReport } from "../../src/verify";
import { type Fetcher } from "../../src/verify/types";
import {
  discloseOnlyFields,
  fakeCertificate,
  finishRun,
  forgeEnv,
  forgeRun,
  forgeScenario,
  ISSUER_ORIGIN,
  pageUrlOf,
  publish,
  publishHead,
  registerRun,
  registerServerCertificate,
  resign,
  servePage,
  startRun,
  verifyForged,
  type ForgeEnv,
} from "../helpers/forge";

const DAY = 86_400;

const step = (report: VerificationReport, id: StepId): StepResult => report.steps.find((s) => s.id === id)!;
const failing = (report: VerificationReport): StepId[] =>
  report.steps.filter((s) => s.status === "fail").map((s) => s.id);

function expectInvalid(report: VerificationReport, id: StepId, says: RegExp): void {
  const shown = renderReport(report);
  expect(report.verdict, shown).to.equal("invalid");
  expect(report.exit_code, shown).to.equal(1);
  expect(failing(report), shown).to.include(id);
  const found = step(report, id);
  expect(`${found.detail}\n${found.problems.join("\n")}`, shown).to.match(says);
}

/** Rebuilds the pages of `protocol` from entry lines as given (bytes the issuer chose), and re-signs the head. */
async function publishLines(env: ForgeEnv, protocol: InstanceProtocol, lines: string[]): Promise<string> {
  const instance = protocol.instance_hash;
  const size = protocol.page_size;
  let accumulator: HexHash = instance;
  for (let index = 0; index === 0 || index * size < lines.length; index += 1) {
    const out = [pageHeaderLine(instance, index, accumulator)];
    for (const line of lines.slice(index * size, (index + 1) * size)) {
      accumulator = nextAccumulator(accumulator, line);
      out.push(line);
    }
    servePage(env.server, instance, index, out.join("\n") + "\n");
  }
  const { signature: _signature, ...unsigned } = { ...headOf(protocol), accumulator, entries: lines.length };
  return publishHead(env.server, await signHead(unsigned, env.issuer));
}

/** The entry lines of a genuine protocol, exactly as the issuer's server publishes them. */
function entryLines(protocol: InstanceProtocol): string[] {
  return encodePages(protocol).flatMap((page) => page.toString("utf8").split("\n").slice(1, -1));
}

describe("attacks on the protocol, transport and binding layers", function () {
  this.timeout(120_000);

  describe("binding of the verdict to the question", function () {
    it("mirror URL smuggling another instance in its query (path names A, the query B): never valid for A's URL", async function () {
      const { env, run } = await forgeScenario();
      const other = await forgeRun(env, { label: "another genuine run of the issuer" });
      // A hostile mirror answers GET /acme/instances/<A>/protocol?/instances/<B>/protocol with B's genuine head,
      // and every content path after the "?" with B's genuine files.
      const base = `http://mirror.statetrail.test/acme/instances/${run.instanceHash}/protocol?`;
      const url = `${base}/instances/${other.instanceHash}/protocol`;
      const mirror: Fetcher = async (requested) => {
        const bytes = requested.startsWith(base)
          ? env.server.bytes(ISSUER_ORIGIN + requested.slice(base.length))
          : undefined;
        if (!bytes) throw new StatetrailError("FETCH_FAILED", `GET ${requested}: HTTP 404`);
        return { bytes, certificate: null };
      };
      const report = await verifyForged(env, { url }, { mirror: { fetcher: mirror } });
      // The URL's path names A (the report says so itself) …
      expect(new URL(url).pathname).to.equal(`/acme/instances/${run.instanceHash}/protocol`);
      expect(report.expected?.instance_hash).to.equal(run.instanceHash);
      // … so a protocol about B is a substitution (or the URL is refused): never valid, never "valid, NOT MATCHED".
      expect(report.expected?.matched, renderReport(report)).to.not.equal(true);
      expectInvalid(report, "V1", /instance|mirror URL/);
    });

    it("mirror URL with a fragment naming another instance (…/A/protocol#/instances/B/protocol): never valid", async function () {
      const { env, run } = await forgeScenario();
      const other = await forgeRun(env, { label: "another genuine run of the issuer" });
      const root = "http://mirror.statetrail.test/acme";
      const url = `${root}/instances/${run.instanceHash}/protocol#/instances/${other.instanceHash}/protocol`;
      // A fragment never reaches the server (fetch drops it): the mirror serves by path only, B's head at A's path.
      const mirror: Fetcher = async (requested) => {
        const path = requested.split("#")[0];
        const relative = path.startsWith(root) ? path.slice(root.length) : "";
        const swapped = relative === `/instances/${run.instanceHash}/protocol` ? other.url : ISSUER_ORIGIN + relative;
        const bytes = env.server.bytes(swapped);
        if (!bytes) throw new StatetrailError("FETCH_FAILED", `GET ${path}: HTTP 404`);
        return { bytes, certificate: null };
      };
      const report = await verifyForged(env, { url }, { mirror: { fetcher: mirror } });
      expect(report.verdict, renderReport(report)).to.not.equal("valid");
      expect(report.verdict).to.not.equal("valid-as-disclosed");
    });
  });

  describe("concurrent steps reading what another step has not checked yet", function () {
    it("V3 judges the run's certificate on the states' claimed times (unproven when it runs): times moved into a later certificate's window are caught by V6", async function () {
      const { env, run } = await forgeScenario();
      // A certificate registered only after every state of the run (an hour later): it did not speak for the issuer
      // when the states were registered. The issuer's server presents it and the protocol names it as the run's.
      await time.increase(3_600);
      const now = (await ethers.provider.getBlock("latest"))!.timestamp;
      const rotated = fakeCertificate("registered after the run", now, now + 30 * DAY);
      await registerServerCertificate(env.certificates, env.issuer, rotated);
      const registeredAt = await ethers.provider.getBlockNumber();
      env.server.certificate = rotated;
      // The liar moves every state's time and block into the new certificate's window and signs again.
      const protocol = structuredClone(run.protocol);
      protocol.issuer.certificate_fingerprint = rotated.fingerprint;
      protocol.instance_protocol.forEach((entry, seq) => {
        entry.timestamp = now + 1 + seq;
        entry.block_nr = registeredAt;
      });
      const url = publish(env.server, await resign(protocol, env.issuer));
      const report = await verifyForged(env, { url });
      expectInvalid(report, "V6", /is in block|timestamp/);
    });

    it("the pages served differently on V7's second read (its explanation) cannot hide a run the chain holds twice", async function () {
      const env = await forgeEnv();
      const pending = await startRun(env, { label: "registered twice", states: 3, status: "running" });
      await registerRun(pending, { perState: 3 });
      // The issuer registers the same three hashes again after its head: six states on-chain.
      const instance = toBytes32(pending.instanceHash);
      await (
        await env.instances
          .connect(env.issuer)
          .registerStates(instance, toBytes32(pending.hashes[2]), pending.hashes.map(toBytes32))
      ).wait();
      const run = await finishRun(env, pending, { terminate: false });
      // The head lists the first three and claims the chain's head seq (5), the hash at the head is the same.
      const protocol = structuredClone(run.protocol);
      protocol.head = { seq: 5, state_hash: pending.hashes[2] };
      const url = publish(env.server, await resign(protocol, env.issuer));
      const page0 = pageUrlOf(pending.instanceHash, 0);
      let reads = 0;
      const fetcher: Fetcher = async (requested, request) => {
        if (requested === page0 && ++reads > 1) {
          throw new StatetrailError("FETCH_FAILED", `GET ${requested}: HTTP 503`);
        }
        return env.server.fetcher(requested, request);
      };
      const report = await verifyForged(env, { url }, { fetcher });
      expect(reads, "V7's explanation read the pages again").to.be.at.least(2);
      expectInvalid(report, "V7", /head|withheld/);
    });
  });

  describe("pages: bytes the issuer signed that are not the canonical entry", function () {
    const variants: Array<{ name: string; seq: number; edit: (line: string) => string }> = [
      { name: "a number written 1e0 (seq of entry 1)", seq: 1, edit: (line) => line.replace('"seq":1,', '"seq":1e0,') },
      { name: "a number written -0 (seq of entry 0)", seq: 0, edit: (line) => line.replace('"seq":0,', '"seq":-0,') },
      {
        name: "a unicode escape JSON.stringify would not write (state_name of entry 1)",
        seq: 1,
        edit: (line) => line.replace('"state_name":"Step1"', '"state_name":"Step\\u0031"'),
      },
      {
        name: "members out of order (state_type before state_name)",
        seq: 1,
        edit: (line) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          const { state_type: type, ...rest } = entry;
          return JSON.stringify({ state_type: type, ...rest });
        },
      },
    ];
    for (const variant of variants) {
      it(`refuses an entry line with ${variant.name}, accumulator recomputed and head re-signed (V8 PAGE_INVALID)`, async function () {
        const { env, run } = await forgeScenario();
        const lines = entryLines(run.protocol);
        const edited = variant.edit(lines[variant.seq]);
        expect(edited, "the variant changes the line").to.not.equal(lines[variant.seq]);
        lines[variant.seq] = edited;
        const url = await publishLines(env, run.protocol, lines);
        const report = await verifyForged(env, { url });
        expectInvalid(report, "V8", /canonical|not a protocol entry|not JSON/);
        expect(step(report, "V8").code).to.equal("PAGE_INVALID");
      });
    }
  });

  describe("selective disclosure", function () {
    it("a redacted state whose entry claims another state name and type than its state data (re-signed): invalid (V6)", async function () {
      const { env, run } = await forgeScenario();
      // Entry 1 is a Task: nothing of its data is disclosed; the entry says it was the Succeed state "Approved".
      discloseOnlyFields(env.server, run, 1, []);
      expect(run.stateData[1].state_type).to.equal("Task");
      const protocol = structuredClone(run.protocol);
      protocol.instance_protocol[1].state_name = "Approved";
      protocol.instance_protocol[1].state_type = "Succeed";
      const url = publish(env.server, await resign(protocol, env.issuer));
      const report = await verifyForged(env, { url });
      expectInvalid(report, "V6", /state data names "Step1"/);
      expect(step(report, "V6").problems.join("\n")).to.match(/state data has type Task, entry Succeed/);
    });
  });
});
