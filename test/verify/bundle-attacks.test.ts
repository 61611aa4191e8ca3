import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { toBytes32 } from "../../src/chain/hash";
import { encodePages, headOf } from "../../src/protocol/pages";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { type Bundle } from "../../src/verify/bundle";
import { CertificateRegistry__factory } from "../../typechain-types";
import { runCli } from "../helpers/cli-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

interface Step {
  id: string;
  status: string;
  required: boolean;
  code?: string;
  detail: string;
}
interface Report {
  verdict: string;
  exit_code: number;
  source: string;
  subject: { instance_hash: string; status: string } | null;
  steps: Step[];
}
interface Run {
  input_form: string;
  reports: Report[];
  summary: { instances: number; valid: number; invalid: number; could_not_verify: number; exit_code: number };
}

/**
 * Offline bundles (today's change), attacked beyond test/verify/bundle.test.ts: each a bundle a dishonest issuer or a
 * man in the middle could hand an auditor. Only the content proven by hashes, signature and chain may make a bundle
 * valid; anything else it claims is either checked or reported as not observed.
 */
describe("offline bundles: attacks (security, today)", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let a: InstanceProtocol;
  let b: InstanceProtocol;
  let dir: string;
  let ofName: string; // a and b, from the ENS name
  let ofUrl: string; // a alone

  async function verify(...args: string[]): Promise<{ code: number; run: Run; stderr: string }> {
    const result = await runCli(["--rpc", chain.url, "--json", "verify", ...args, ...trustFlags(issuer)]);
    let run: Run;
    try {
      run = JSON.parse(result.stdout) as Run;
    } catch {
      throw new Error(`not JSON (exit ${result.code}): ${result.stdout}\n${result.stderr}`);
    }
    return { code: result.code, run, stderr: result.stderr };
  }
  const step = (report: Report, id: string): Step => report.steps.find((s) => s.id === id)!;
  const read = (file: string): Bundle => JSON.parse(fs.readFileSync(file, "utf8")) as Bundle;
  function forge(file: string, name: string, change: (bundle: Bundle) => void): string {
    const bundle = read(file);
    change(bundle);
    const forged = path.join(dir, name);
    fs.writeFileSync(forged, JSON.stringify(bundle));
    return forged;
  }
  const text = (bundle: Bundle, key: string): string => Buffer.from(bundle.files[key], "base64").toString("utf8");
  const encode = (value: string): string => Buffer.from(value).toString("base64");
  const protocolKey = (p: InstanceProtocol) => `instances/${p.instance_hash}/protocol`;
  /** A status the genuine protocol does not have. */
  const otherStatus = (): string => (a.status === "failed" ? "succeeded" : "failed");
  const failing = (report: Report) => report.steps.filter((s) => s.status === "fail").map((s) => s.id);

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "acme" });
    a = await runRefundRequest(issuer);
    b = await runRefundRequest(issuer);
    dir = fs.mkdtempSync(path.join(issuer.home.path(), "bundle-attacks-"));
    ofName = path.join(dir, "acme.bundle.json");
    ofUrl = path.join(dir, "a.bundle.json");
    expect((await verify("acme.test", "--save-bundle", ofName)).code).to.equal(0);
    const url = `${issuer.identity.record.url}/instances/${a.instance_hash}/protocol`;
    expect((await verify(url, "--save-bundle", ofUrl)).code).to.equal(0);
    await issuer.server.close(); // offline from here on
  });
  after(function () {
    issuer?.provider.destroy();
  });

  it("the genuine bundles are valid offline, and --json says the input form", async function () {
    const { code, run } = await verify(ofName);
    expect(code).to.equal(0);
    expect(run.input_form).to.equal("bundle");
    expect(run.summary).to.include({ instances: 2, valid: 2 });
    for (const report of run.reports) {
      expect(step(report, "V1")).to.include({ status: "skip", required: false });
      expect(step(report, "V3")).to.include({ status: "skip", required: false });
    }
  });

  it("instance A listed, its protocol path holding B's protocol: invalid (V1), without --instance too", async function () {
    const forged = forge(ofName, "a-holds-b.json", (bundle) => {
      bundle.files[protocolKey(a)] = bundle.files[protocolKey(b)];
      bundle.instances = bundle.instances.filter((entry) => entry.instance_hash === a.instance_hash);
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(1);
    expect(step(run.reports[0], "V1")).to.include({ status: "fail", code: "PROTOCOL_INVALID" });
  });

  it("an entry for A whose protocol_url names B: BUNDLE_INVALID, never valid", async function () {
    const forged = forge(ofName, "url-of-b.json", (bundle) => {
      const entry = bundle.instances.find((e) => e.instance_hash === a.instance_hash)!;
      entry.protocol_url = entry.protocol_url.replace(a.instance_hash, b.instance_hash);
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(2);
    expect(step(run.reports[0], "V1").code).to.equal("BUNDLE_INVALID");
  });

  it("two instances sharing files: B's state body under A's state path is caught by its hash (V6)", async function () {
    const forged = forge(ofName, "shared-state.json", (bundle) => {
      bundle.files[`states/${a.instance_protocol[1].state_hash}`] =
        bundle.files[`states/${b.instance_protocol[1].state_hash}`];
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(1);
    const byHash = new Map(run.reports.map((r) => [r.subject?.instance_hash, r]));
    expect(failing(byHash.get(a.instance_hash)!)).to.include("V6");
    expect(byHash.get(b.instance_hash)!.verdict).to.equal("valid");
  });

  it("a bundle of issuer X asked about issuer Y, or about an instance it does not hold: every report invalid", async function () {
    const other = "0x" + "12".repeat(20);
    const asked = await verify(ofName, "--issuer", other);
    expect(asked.code).to.equal(1);
    expect(asked.run.reports).to.have.length(2);
    for (const report of asked.run.reports) expect(step(report, "V1")).to.include({ code: "SUBJECT_MISMATCH" });
    const missing = await verify(ofUrl, "--instance", b.instance_hash);
    expect(missing.code).to.equal(1);
    expect(missing.run.summary.valid).to.equal(0);
  });

  it("a protocol_url on another origin than the protocol's issuer.url: the verdict rests on the content only, V1 says nothing was observed", async function () {
    const forged = forge(ofUrl, "other-origin.json", (bundle) => {
      bundle.instances[0].protocol_url = `https://evil.example/mirror/instances/${a.instance_hash}/protocol`;
    });
    const { code, run } = await verify(forged);
    const report = run.reports[0];
    // Genuine content: valid is the content's verdict, and nothing claims evil.example is the issuer's server.
    expect(code).to.equal(0);
    expect(step(report, "V1")).to.include({ status: "skip", required: false });
    expect(step(report, "V1").detail).to.contain("no TLS connection to the issuer's server was observed");
    expect(step(report, "V3").detail).to.contain("not evidence");
    // Altered content under that origin is caught exactly as under the issuer's.
    const altered = forge(forged, "other-origin-altered.json", (bundle) => {
      const key = `states/${a.instance_protocol[0].state_hash}`;
      bundle.files[key] = encode(text(bundle, key).replace(/}\s*$/, ',"x":1}'));
    });
    expect((await verify(altered)).code).to.equal(1);
  });

  describe("a file under a content path whose bytes are not what the path names", function () {
    it("a model's bytes changed: invalid (V4)", async function () {
      const forged = forge(ofUrl, "model.json", (bundle) => {
        const key = `models/${a.model_hash}`;
        bundle.files[key] = encode(text(bundle, key) + " ");
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(failing(run.reports[0])).to.include("V4");
    });

    it("the input's bytes changed, even by whitespace only (not content-addressed by its path): invalid (V5)", async function () {
      const forged = forge(ofUrl, "input.json", (bundle) => {
        const key = `instances/${a.instance_hash}/input`;
        bundle.files[key] = encode(text(bundle, key) + "\n");
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(failing(run.reports[0])).to.include("V5");
    });

    it("the protocol's content changed (not content-addressed by its path): invalid (V8 signature)", async function () {
      const forged = forge(ofUrl, "protocol-status.json", (bundle) => {
        const protocol = JSON.parse(text(bundle, protocolKey(a))) as InstanceProtocol;
        protocol.issuer.url = "https://evil.example";
        bundle.files[protocolKey(a)] = encode(JSON.stringify(protocol));
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(failing(run.reports[0])).to.include("V8");
    });

    it("the protocol re-serialised (other bytes, same signed content): valid, as its signature covers the content", async function () {
      const forged = forge(ofUrl, "protocol-pretty.json", (bundle) => {
        bundle.files[protocolKey(a)] = encode(JSON.stringify(JSON.parse(text(bundle, protocolKey(a))), null, 3));
      });
      expect((await verify(forged)).code).to.equal(0);
    });
  });

  it("a protocol of version 1: invalid (V1 PROTOCOL_VERSION)", async function () {
    const forged = forge(ofUrl, "v1.json", (bundle) => {
      const protocol = JSON.parse(text(bundle, protocolKey(a))) as Record<string, unknown>;
      bundle.files[protocolKey(a)] = encode(JSON.stringify({ ...protocol, protocol_version: 1 }));
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(1);
    expect(step(run.reports[0], "V1")).to.include({ status: "fail", code: "PROTOCOL_VERSION" });
  });

  it("a protocol with a duplicate key whose last value is forged: invalid (V1, INVALID_JSON: duplicate key)", async function () {
    const forged = forge(ofUrl, "duplicate-last.json", (bundle) => {
      const genuine = text(bundle, protocolKey(a)).trimEnd();
      bundle.files[protocolKey(a)] = encode(`${genuine.slice(0, -1)},"status":${JSON.stringify(otherStatus())}}`);
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(1);
    expect(step(run.reports[0], "V1")).to.include({ status: "fail", code: "INVALID_JSON" });
  });

  it("a protocol with a duplicate key whose first value is a decoy: invalid (V1, INVALID_JSON: duplicate key), though the last is the signed one", async function () {
    const forged = forge(ofUrl, "duplicate-first.json", (bundle) => {
      const genuine = text(bundle, protocolKey(a)).trim();
      bundle.files[protocolKey(a)] = encode(`{"status":${JSON.stringify(otherStatus())},${genuine.slice(1)}`);
    });
    const { code, run } = await verify(forged);
    // JSON.parse keeps the last value, the signed one; a reader keeping the first would see the decoy: refused.
    expect(code).to.equal(1);
    expect(step(run.reports[0], "V1")).to.include({ status: "fail", code: "INVALID_JSON" });
  });

  it("a bundle over the size limit: could not verify (INPUT_TOO_LARGE), read no further", async function () {
    const huge = path.join(dir, "huge.json");
    fs.writeFileSync(huge, '{"statetrail_bundle":1');
    fs.truncateSync(huge, 256 * 1024 * 1024 + 1); // sparse: no disk used
    const { code, run } = await verify(huge);
    expect(code).to.equal(2);
    expect(step(run.reports[0], "V1").code).to.equal("INPUT_TOO_LARGE");
  });

  it("a bundle with no instance: could not verify, never valid", async function () {
    const forged = forge(ofUrl, "empty.json", (bundle) => {
      bundle.instances = [];
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(2);
    expect(run.summary.valid).to.equal(0);
  });

  it("an instance listed twice: refused (BUNDLE_INVALID), not counted twice as valid", async function () {
    const forged = forge(ofUrl, "twice.json", (bundle) => {
      bundle.instances.push({ ...bundle.instances[0] });
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(2);
    expect(run.summary.valid).to.equal(0);
    expect(step(run.reports[0], "V1").code).to.equal("BUNDLE_INVALID");
  });

  describe("pages (protocol v3): the head commits to every entry through the accumulator", function () {
    let paged: string; // a's bundle with its protocol published again by the issuer in pages of one entry
    const pageKey = (p: InstanceProtocol, index: number) => `instances/${p.instance_hash}/protocol/pages/${index}`;

    before(async function () {
      // The issuer's own key signs a head of page size 1 over the same entries: a genuine protocol of several pages.
      const resealed = await signProtocol({ ...a, page_size: 1 }, issuer.identity.signer);
      expect(encodePages(resealed).length).to.be.greaterThan(2);
      paged = forge(ofUrl, "paged.json", (bundle) => {
        for (const key of Object.keys(bundle.files))
          if (key.startsWith(`${protocolKey(a)}/pages/`)) delete bundle.files[key];
        bundle.files[protocolKey(a)] = encode(JSON.stringify(headOf(resealed)));
        encodePages(resealed).forEach((bytes, index) => (bundle.files[pageKey(a, index)] = bytes.toString("base64")));
      });
    });

    it("the genuine protocol in pages of one entry: valid", async function () {
      const { code, run } = await verify(paged);
      expect(code, JSON.stringify(run.reports[0].steps)).to.equal(0);
    });

    it("two pages of the instance exchanged: invalid, never valid", async function () {
      const forged = forge(paged, "pages-exchanged.json", (bundle) => {
        [bundle.files[pageKey(a, 0)], bundle.files[pageKey(a, 1)]] = [
          bundle.files[pageKey(a, 1)],
          bundle.files[pageKey(a, 0)],
        ];
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(run.reports[0].verdict).to.equal("invalid");
    });

    it("a page of another instance under this instance's page path: invalid", async function () {
      const forged = forge(paged, "page-of-b.json", (bundle) => {
        bundle.files[pageKey(a, 0)] = read(ofName).files[pageKey(b, 0)];
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(run.reports[0].verdict).to.equal("invalid");
    });

    it("a page's last entry cut off (a truncated page): invalid", async function () {
      const forged = forge(paged, "page-truncated.json", (bundle) => {
        const lines = text(bundle, pageKey(a, 1)).trimEnd().split("\n");
        bundle.files[pageKey(a, 1)] = encode(lines.slice(0, -1).join("\n") + "\n");
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(run.reports[0].verdict).to.equal("invalid");
    });

    it("a page the head needs left out: could not verify (nothing contradicts the issuer; nothing proves the entries)", async function () {
      const forged = forge(paged, "page-missing.json", (bundle) => {
        delete bundle.files[pageKey(a, 1)];
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(2);
      expect(run.summary.valid).to.equal(0);
      const errored = run.reports[0].steps.filter((s) => s.status === "error");
      expect(errored.map((s) => s.detail).join("\n")).to.contain(`${pageKey(a, 1)} is not in the bundle`);
    });

    it("the pages of the genuine head kept, the head of an earlier, shorter protocol put back: invalid (V7 or the pages)", async function () {
      const earlier = await signProtocol(
        {
          ...a,
          page_size: 1,
          status: "running",
          terminated: null,
          instance_protocol: a.instance_protocol.slice(0, 2),
          head: { seq: 1, state_hash: a.instance_protocol[1].state_hash },
        },
        issuer.identity.signer,
      );
      const forged = forge(paged, "earlier-head.json", (bundle) => {
        bundle.files[protocolKey(a)] = encode(JSON.stringify(headOf(earlier)));
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(1);
      expect(failing(run.reports[0])).to.include("V7");
    });
  });

  it("a recorded certificate window that is not the registry's: the registry's is reported, the bundle's is ignored", async function () {
    const forged = forge(ofUrl, "window.json", (bundle) => {
      bundle.instances[0].certificate!.not_before = 0;
      bundle.instances[0].certificate!.not_after = 1;
    });
    const { code, run } = await verify(forged);
    expect(code).to.equal(0);
    const v3 = step(run.reports[0], "V3");
    expect(v3).to.include({ status: "skip", required: false });
    expect(v3.detail).not.to.contain("1970-01-01T00:00:01");
  });

  it("a recorded certificate the issuer revoked: V3 says so and stays not-evidence; nothing else changes", async function () {
    const certificates = CertificateRegistry__factory.connect(issuer.registries.certificate, issuer.identity.signer);
    await (await certificates.revokeCertificate(toBytes32(issuer.identity.record.certificate_fingerprint))).wait();
    const { run } = await verify(ofUrl);
    const v3 = step(run.reports[0], "V3");
    expect(v3).to.include({ status: "skip", required: false });
    expect(v3.detail).to.contain("revoked at").and.contain("not evidence");
    for (const id of ["V0", "V4", "V5", "V6", "V7", "V8", "V9"])
      expect(step(run.reports[0], id).status).to.equal("pass");
  });
});
