import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { startServer } from "../../src/server";
import { runCli } from "../helpers/cli-run";
import { setupImpostor, substituteAt, type Impostor, type Substitute } from "../helpers/impostor";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

interface Report {
  verdict: string;
  subject: { instance_hash: string; issuer: string; ens_name?: string | null } | null;
  expected?: { instance_hash: string | null; issuer: string | null; ens_name: string | null; matched: boolean | null };
  steps: Array<{ id: string; status: string; code?: string; detail: string; problems: string[] }>;
}

/**
 * Finding 1 of issue 12 (subject substitution): issuer B, with its own key, registered certificate and ENS
 * name whose `url` is issuer A's origin, answers at A's origin and serves its own genuine instance Y where A's
 * instance X is asked for. Every form of the question must say INVALID; the verdict is bound to the
 * instance asked for and to the issuer the name resolves to.
 */
describe("the verdict is bound to the question (issue 12, finding 1)", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let a: TestIssuer;
  let b: Impostor;
  let x: InstanceProtocol;
  let y: InstanceProtocol;
  let substitute: Substitute | undefined;

  const flags = (): string[] => trustFlags(a);
  const urlOf = (instance: string): string => `${a.identity.record.url}/instances/${instance}/protocol`;

  async function verify(...args: string[]): Promise<{ code: number; reports: Report[] }> {
    const result = await runCli(["--rpc", chain.url, "--json", "verify", ...args, ...flags()]);
    const parsed = JSON.parse(result.stdout || "null") as { reports: Report[] } | null;
    expect(parsed, result.stderr).to.not.equal(null);
    return { code: result.code, reports: parsed!.reports };
  }

  const step = (report: Report, id: string) => report.steps.find((candidate) => candidate.id === id)!;

  before(async function () {
    a = await setupIssuer(chain.url, { label: "a" });
    b = await setupImpostor(a, "b");
    x = await runRefundRequest(a);
    y = await runRefundRequest(b);
    expect(b.identity.record.url).to.equal(a.identity.record.url); // B claims A's origin
  });
  after(async function () {
    await substitute?.close();
    await a?.close();
  });

  it("the genuine issuer: every form is valid and the report states the subject it matched", async function () {
    const address = a.identity.record.address;
    for (const args of [
      ["a.test"],
      ["a.test", "--instance", x.instance_hash],
      [urlOf(x.instance_hash), "--issuer", address],
    ]) {
      const { code, reports } = await verify(...args);
      expect(code, `${args.join(" ")}: ${JSON.stringify(reports[0].steps)}`).to.equal(0);
      expect(reports).to.have.length(1);
      expect(reports[0].subject).to.include({ instance_hash: x.instance_hash, issuer: address });
      expect(reports[0].expected).to.include({ issuer: address, matched: true });
    }
    const text = await runCli(["--rpc", chain.url, "verify", "a.test", ...flags()]);
    expect(text.stdout).to.contain(`Subject: instance ${x.instance_hash} of issuer ${address} (a.test)`);
    expect(text.stdout).to.contain(`Asked:   instance ${x.instance_hash} of issuer ${address} (a.test): matched`);
  });

  describe("B answers at A's origin with B's genuine instance Y", function () {
    before(async function () {
      const { host, port } = a.server;
      await a.server.close();
      substitute = await substituteAt({ host, port }, b, {
        [`/instances/${x.instance_hash}/protocol`]: `/instances/${y.instance_hash}/protocol`,
      });
    });
    after(async function () {
      await substitute?.close();
      substitute = undefined;
      a.server = await startServer({ home: a.home, port: a.server.port, log: () => undefined });
    });

    it("Y itself is genuine: asked without an issuer, it verifies valid as B's instance", async function () {
      const { code, reports } = await verify(urlOf(y.instance_hash));
      expect(code, JSON.stringify(reports[0].steps)).to.equal(0);
      expect(reports[0].subject).to.include({ instance_hash: y.instance_hash, issuer: b.identity.record.address });
    });

    it("verify <A's URL of X> is invalid: the protocol is not about instance X (V1 SUBJECT_MISMATCH)", async function () {
      const { code, reports } = await verify(urlOf(x.instance_hash));
      expect(code).to.equal(1);
      expect(reports[0].verdict).to.equal("invalid");
      expect(step(reports[0], "V1")).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
      expect(reports[0].expected).to.include({ instance_hash: x.instance_hash, matched: false });
    });

    it("verify a.test --instance X is invalid: neither the instance nor the issuer is the one asked for", async function () {
      const { code, reports } = await verify("a.test", "--instance", x.instance_hash);
      expect(code).to.equal(1);
      expect(step(reports[0], "V1")).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
      expect(step(reports[0], "V1").problems.join("\n"))
        .to.contain(`not instance ${x.instance_hash}`)
        .and.to.contain(`not the issuer asked for ${a.identity.record.address}, the address a.test resolves to`);
      expect(reports[0].expected).to.include({ issuer: a.identity.record.address, ens_name: "a.test", matched: false });
    });

    it("verify a.test is invalid: the listing comes from a server whose certificate is not A's", async function () {
      const { code, reports } = await verify("a.test");
      expect(code).to.equal(1);
      expect(reports.every((report) => report.verdict === "invalid")).to.equal(true);
      expect(step(reports[0], "V1")).to.include({ status: "fail", code: "CERT_NOT_REGISTERED" });
    });

    it("verify <URL of Y> --issuer A is invalid: Y is B's", async function () {
      const { code, reports } = await verify(urlOf(y.instance_hash), "--issuer", a.identity.record.address);
      expect(code).to.equal(1);
      expect(step(reports[0], "V1")).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
    });

    it("a protocol file of Y with --issuer A is invalid", async function () {
      const file = path.join(a.home.path(), "y-protocol.json");
      fs.writeFileSync(file, JSON.stringify(y));
      const { code, reports } = await verify(file, "--issuer", a.identity.record.address);
      expect(code).to.equal(1);
      expect(step(reports[0], "V1")).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
    });

    it("watch a.test --instance X stops at once with exit 1", async function () {
      const result = await runCli([
        "--rpc",
        chain.url,
        "--json",
        "watch",
        "a.test",
        "--instance",
        x.instance_hash,
        "--timeout",
        "30",
        ...flags(),
      ]);
      expect(result.code, result.stdout + result.stderr).to.equal(1);
      expect(result.stdout).to.contain('"verdict":"invalid"');
    });
  });
});
