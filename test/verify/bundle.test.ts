import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { type Bundle } from "../../src/verify/bundle";
import { repeatCommand } from "../../src/verify/html";
import { type VerificationReport } from "../../src/verify/types";
import { runCli } from "../helpers/cli-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

interface Step {
  id: string;
  status: string;
  required: boolean;
  code?: string;
  detail: string;
  problems: string[];
}
interface Report {
  verdict: string;
  exit_code: number;
  subject: { instance_hash: string } | null;
  steps: Step[];
  bundle?: string;
}
interface Run {
  input_form: string;
  reports: Report[];
  summary: { instances: number; valid: number; invalid: number; could_not_verify: number; exit_code: number };
  bundle?: { file: string; instances: string[] };
}

/**
 * Issue 15, item 6: `verify <url|name> --save-bundle <file>` writes what the verifier fetched; `verify <file>`
 * verifies it with no issuer server. The bundle is untrusted input: the attacks come first, each a bundle a
 * hostile party could hand an auditor; then the genuine bundle, verified with the issuer's server stopped.
 */
describe("offline bundles (issue 15, item 6)", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let x: InstanceProtocol;
  let y: InstanceProtocol;
  let dir: string;
  let ofName: string; // both instances, from the ENS name
  let ofUrl: string; // x alone, from its URL
  let ofFile: string; // x alone, from a protocol file
  let z: InstanceProtocol; // a run published in pages of 2 entries
  let ofPaged: string; // z alone, from its URL
  let stopped = false;

  const trust = (): string[] => trustFlags(issuer);
  async function verify(...args: string[]): Promise<{ code: number; run: Run; stdout: string; stderr: string }> {
    const result = await runCli(["--rpc", chain.url, "--json", "verify", ...args, ...trust()]);
    return { ...result, run: JSON.parse(result.stdout) as Run };
  }
  const step = (report: Report, id: string): Step => report.steps.find((s) => s.id === id)!;
  const read = (file: string): Bundle => JSON.parse(fs.readFileSync(file, "utf8")) as Bundle;
  /** A copy of `file` changed by `change`, written next to it. */
  function forge(file: string, name: string, change: (bundle: Bundle) => void): string {
    const bundle = read(file);
    change(bundle);
    const forged = path.join(dir, name);
    fs.writeFileSync(forged, JSON.stringify(bundle));
    return forged;
  }
  const decode = (bundle: Bundle, key: string): unknown =>
    JSON.parse(Buffer.from(bundle.files[key], "base64").toString("utf8"));

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "acme" });
    x = await runRefundRequest(issuer);
    y = await runRefundRequest(issuer);
    dir = fs.mkdtempSync(path.join(issuer.home.path(), "bundles-"));
    ofName = path.join(dir, "acme.bundle.json");
    ofUrl = path.join(dir, "x.bundle.json");
    ofFile = path.join(dir, "x-file.bundle.json");
    const made = await verify("acme.test", "--save-bundle", ofName);
    expect(made.code, made.stderr).to.equal(0);
    expect(made.run.bundle?.file).to.equal(ofName);
    expect(made.run.bundle?.instances).to.have.members([x.instance_hash, y.instance_hash]);
    expect(made.stderr).to.contain(`bundle written to ${ofName}: 2 instance(s)`);
    const url = `${issuer.identity.record.url}/instances/${x.instance_hash}/protocol`;
    expect((await verify(url, "--save-bundle", ofUrl)).code).to.equal(0);
    const protocolFile = path.join(dir, "x.protocol.json");
    fs.writeFileSync(protocolFile, JSON.stringify(x, null, 1));
    expect((await verify(protocolFile, "--save-bundle", ofFile)).code).to.equal(0);
    z = await runRefundRequest({
      home: issuer.home,
      tracker: (engine, options) => issuer.tracker(engine, { ...options, pageSize: 2 }),
    });
    ofPaged = path.join(dir, "z-paged.bundle.json");
    const paged = await verify(
      `${issuer.identity.record.url}/instances/${z.instance_hash}/protocol`,
      "--save-bundle",
      ofPaged,
    );
    expect(paged.code, paged.stderr).to.equal(0);
    // From here on, the issuer's server is down: a bundle needs only the RPC.
    await issuer.server.close();
    stopped = true;
  });
  after(async function () {
    if (stopped) issuer.provider.destroy();
    else await issuer?.close();
  });

  it("what a bundle holds: every fetched body under its content path, and the certificate seen", function () {
    const bundle = read(ofName);
    expect(bundle.statetrail_bundle).to.equal(1);
    const paths = Object.keys(bundle.files);
    for (const p of [x, y]) {
      expect(paths).to.include.members([
        `instances/${p.instance_hash}/protocol`,
        `instances/${p.instance_hash}/protocol/pages/0`,
        `instances/${p.instance_hash}/input`,
        `models/${p.model_hash}`,
        ...p.instance_protocol.map((entry) => `states/${entry.state_hash}`),
      ]);
    }
    expect(bundle.instances[0].certificate?.fingerprint).to.equal(issuer.identity.record.certificate_fingerprint);
    // The protocol's path holds its signed head (entries in pages), as served.
    const head = decode(bundle, `instances/${x.instance_hash}/protocol`) as Record<string, unknown>;
    expect(head).to.not.have.property("instance_protocol");
    expect(head).to.include({ entries: x.instance_protocol.length });
  });

  it("a bundle made from a whole protocol file holds its head and its pages, encoded as the issuer serves them", function () {
    const bundle = read(ofFile);
    const head = decode(bundle, `instances/${x.instance_hash}/protocol`) as Record<string, unknown>;
    expect(head).to.not.have.property("instance_protocol");
    expect(head).to.include({ accumulator: x.accumulator, entries: x.instance_protocol.length });
    const page = Buffer.from(bundle.files[`instances/${x.instance_hash}/protocol/pages/0`], "base64").toString("utf8");
    expect(page.trimEnd().split("\n")).to.have.length(1 + x.instance_protocol.length);
  });

  it("a protocol of several pages: every page the verification read is in the bundle, and it is valid offline", async function () {
    const bundle = read(ofPaged);
    const pages = Math.ceil(z.instance_protocol.length / 2);
    expect(pages).to.be.greaterThan(1);
    for (let index = 0; index < pages; index++) {
      expect(Object.keys(bundle.files)).to.include(`instances/${z.instance_hash}/protocol/pages/${index}`);
    }
    const { code, run } = await verify(ofPaged);
    expect(code, JSON.stringify(run.reports[0].steps)).to.equal(0);
    const dropped = forge(ofPaged, "z-page-dropped.json", (b) => {
      delete b.files[`instances/${z.instance_hash}/protocol/pages/${pages - 1}`];
    });
    const without = await verify(dropped);
    expect(without.code).to.equal(2);
  });

  describe("attacks: a hostile bundle is never valid", function () {
    it("a state body altered: invalid (V6)", async function () {
      const key = `states/${x.instance_protocol[1].state_hash}`;
      const forged = forge(ofUrl, "altered-state.json", (bundle) => {
        // The state document's data line altered, its disclosures kept.
        const lines = Buffer.from(bundle.files[key], "base64").toString("utf8").split("\n");
        lines[0] = JSON.stringify({ ...(JSON.parse(lines[0]) as Record<string, unknown>), state_name: "Approved" });
        bundle.files[key] = Buffer.from(lines.join("\n")).toString("base64");
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(step(run.reports[0], "V6").status).to.equal("fail");
    });

    it("a state's body dropped: could not verify (V6), never valid", async function () {
      const forged = forge(ofUrl, "dropped-body.json", (bundle) => {
        delete bundle.files[`states/${x.instance_protocol[2].state_hash}`];
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(2);
      expect(step(run.reports[0], "V6").status).to.equal("error");
      expect(step(run.reports[0], "V6").detail).to.contain("is not in the bundle");
    });

    it("a state dropped from a page of the protocol: invalid (the pages no longer reach the head's accumulator)", async function () {
      const key = `instances/${x.instance_hash}/protocol/pages/0`;
      const forged = forge(ofUrl, "dropped-state.json", (bundle) => {
        const lines = Buffer.from(bundle.files[key], "base64").toString("utf8").split("\n");
        lines.splice(2, 1); // the header is line 0: the entry of seq 1
        bundle.files[key] = Buffer.from(lines.join("\n")).toString("base64");
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(run.reports[0].verdict).to.equal("invalid");
    });

    it("a page left out of the bundle: could not verify, never valid (the step that reads it says it is not there)", async function () {
      const forged = forge(ofUrl, "dropped-page.json", (bundle) => {
        delete bundle.files[`instances/${x.instance_hash}/protocol/pages/0`];
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(2);
      expect(run.reports[0].verdict).to.equal("could-not-verify");
      const errored = run.reports[0].steps.filter((s) => s.status === "error");
      expect(errored.length, JSON.stringify(run.reports[0].steps)).to.be.greaterThan(0);
      expect(errored.map((s) => s.detail).join("\n")).to.contain("is not in the bundle");
    });

    it("a certificate fingerprint not registered for the issuer: invalid (V3, taken from the bundle)", async function () {
      const forged = forge(ofUrl, "foreign-certificate.json", (bundle) => {
        bundle.instances[0].certificate!.fingerprint = "ab".repeat(32);
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      const v3 = step(run.reports[0], "V3");
      expect(v3).to.include({ status: "fail", code: "CERT_NOT_REGISTERED" });
      expect(v3.detail).to.contain("from the bundle, not observed on a TLS connection");
    });

    it("a protocol of another instance than --instance asks: invalid (V1 SUBJECT_MISMATCH)", async function () {
      const { code, run } = await verify(ofUrl, "--instance", y.instance_hash);
      expect(code).to.equal(1);
      expect(step(run.reports[0], "V1")).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
    });

    it("another instance's protocol under the asked instance's path: invalid", async function () {
      const forged = forge(ofName, "swapped.json", (bundle) => {
        bundle.files[`instances/${x.instance_hash}/protocol`] = bundle.files[`instances/${y.instance_hash}/protocol`];
        bundle.instances = bundle.instances.filter((entry) => entry.instance_hash === x.instance_hash);
      });
      const { code, run } = await verify(forged, "--instance", x.instance_hash);
      expect(code).to.equal(1);
      expect(step(run.reports[0], "V1").status).to.equal("fail");
    });

    it("another issuer asked (--issuer): invalid", async function () {
      const { code, run } = await verify(ofUrl, "--issuer", "0x" + "12".repeat(20));
      expect(code).to.equal(1);
      expect(step(run.reports[0], "V1")).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
    });

    it("not a bundle this verifier reads: could not verify, BUNDLE_INVALID", async function () {
      const forged = forge(ofUrl, "malformed.json", (bundle) => {
        (bundle.files as Record<string, string>)["../../etc/passwd"] = "AAAA";
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(2);
      expect(step(run.reports[0], "V1").code).to.equal("BUNDLE_INVALID");
      expect(run.input_form, "--json says what was given: a bundle, if a refused one").to.equal("bundle");
    });
  });

  describe("the genuine bundle, with the issuer's server stopped", function () {
    it("from a name: both instances valid offline; V1 and V3 say they come from the bundle", async function () {
      const { code, run, stderr } = await verify(ofName);
      expect(code, stderr).to.equal(0);
      expect(run.input_form).to.equal("bundle");
      expect(run.summary).to.include({ instances: 2, valid: 2, exit_code: 0 });
      for (const report of run.reports) {
        const v1 = step(report, "V1");
        expect(v1).to.include({ status: "skip", required: false });
        expect(v1.detail).to.contain(`bundle: protocol read from ${ofName}`).and.contain("no TLS connection");
        expect(v1.detail).not.to.match(/over TLS|mirror/);
        const v3 = step(report, "V3");
        expect(v3).to.include({ status: "skip", required: false });
        expect(v3.detail).to.contain("not observed on a TLS connection").and.contain("not evidence");
        for (const id of ["V0", "V2", "V4", "V5", "V6", "V7", "V8", "V9"]) {
          expect(step(report, id).status, `${id}: ${step(report, id).detail}`).to.equal("pass");
        }
      }
    });

    it("from a URL and from a protocol file: valid offline; --instance picks the instance", async function () {
      for (const file of [ofUrl, ofFile]) {
        const { code, run } = await verify(file, "--instance", x.instance_hash);
        expect(code, file).to.equal(0);
        expect(run.reports).to.have.length(1);
        expect(run.reports[0].subject?.instance_hash).to.equal(x.instance_hash);
      }
      const picked = await verify(ofName, "--instance", y.instance_hash);
      expect(picked.run.reports.map((r) => r.subject?.instance_hash)).to.deep.equal([y.instance_hash]);
    });

    it("the text report says it is offline and what the verdict rests on", async function () {
      const result = await runCli(["--rpc", chain.url, "verify", ofUrl, ...trust()]);
      expect(result.code).to.equal(0);
      expect(result.stdout).to.contain(
        `Note:    offline bundle ${ofUrl}: nothing was fetched from the issuer's server`,
      );
      expect(result.stdout).to.contain("VALID");
    });

    it("the report names the bundle, and the HTML report's repeat command verifies the bundle again, not a server", async function () {
      const { code, run } = await verify(ofUrl);
      expect(code).to.equal(0);
      expect(run.reports[0].bundle).to.equal(ofUrl);
      const command = repeatCommand(run.reports[0] as unknown as VerificationReport);
      expect(command).to.match(
        new RegExp(`^npx statetrail verify '?${ofUrl.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}'? `),
      );
      expect(command)
        .to.contain(`--instance ${x.instance_hash}`)
        .and.not.contain("--mirror")
        .and.not.contain("https://");
    });

    it("watch does not take a bundle (it follows a live server)", async function () {
      const result = await runCli(["--rpc", chain.url, "watch", ofUrl, ...trust()]);
      expect(result.code).to.equal(64);
    });
  });
});
