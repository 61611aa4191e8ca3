import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { expect } from "chai";
import { freePort } from "../../src/chain/node";
import { pinnedFetch } from "../../src/net/pinned-fetch";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server";
import { type Bundle } from "../../src/verify/bundle";
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
  subject: { instance_hash: string; issuer: string; ens_name: string | null } | null;
  steps: Step[];
}
interface Run {
  input_form: string;
  reports: Report[];
  summary: { instances: number; valid: number; invalid: number; could_not_verify: number; exit_code: number };
}

/**
 * What must never reach an auditor's terminal or HTML report raw, whoever wrote it (the issuer, or whoever handed the
 * auditor a file): C0 controls but tab and line feed (ESC starts ANSI sequences that move the cursor, clear lines,
 * hide text or rewrite the window title; CR overwrites a line), DEL and C1 controls (CSI is a one-byte ESC [), and
 * the bidirectional controls (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, LRM, RLM, ALM) that make the text after
 * them read in another order than it is.
 */
// eslint-disable-next-line no-control-regex
const HOSTILE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/**
 * Attacks on the auditor's input forms (a bundle, a protocol file, an ENS name's listing) and on the reports they
 * produce: by a dishonest issuer, or by whoever hands the auditor a file. Each test names the attack and asserts the
 * correct behaviour.
 */
describe("attacks on the verifier's inputs and reports", function () {
  this.timeout(600_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let a: InstanceProtocol;
  let b: InstanceProtocol;
  let dir: string;
  let ofName: string; // a and b, from the ENS name

  async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return runCli(["--rpc", chain.url, "verify", ...args, ...trustFlags(issuer)]);
  }
  async function verify(...args: string[]): Promise<{ code: number; run: Run; stderr: string }> {
    const result = await runCli(["--rpc", chain.url, "--json", "verify", ...args, ...trustFlags(issuer)]);
    let run: Run;
    try {
      run = JSON.parse(result.stdout) as Run;
    } catch {
      throw new Error(`not a run's JSON (exit ${result.code}): ${result.stdout}\n${result.stderr}`);
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
  const headKey = (p: InstanceProtocol) => `instances/${p.instance_hash}/protocol`;
  /** A bundle of `a` alone whose first state's body is altered: invalid (V6) whatever else it says. */
  function alteredState(bundle: Bundle): void {
    bundle.instances = bundle.instances.filter((entry) => entry.instance_hash === a.instance_hash);
    const key = `states/${a.instance_protocol[0].state_hash}`;
    bundle.files[key] = encode(text(bundle, key).replace(/}\s*$/, ',"x":1}'));
  }
  /** The head of `a` in the bundle with its `issuer.ens_name` replaced (no key needed: it only breaks V2 and V8). */
  function claimName(bundle: Bundle, name: string): void {
    bundle.instances = bundle.instances.filter((entry) => entry.instance_hash === a.instance_hash);
    const head = JSON.parse(text(bundle, headKey(a))) as { issuer: { ens_name: string | null } };
    head.issuer.ens_name = name;
    bundle.files[headKey(a)] = encode(JSON.stringify(head));
  }

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "acme" });
    a = await runRefundRequest(issuer);
    b = await runRefundRequest(issuer);
    dir = fs.mkdtempSync(path.join(issuer.home.path(), "input-attacks-"));
    ofName = path.join(dir, "acme.bundle.json");
    expect((await verify("acme.test", "--save-bundle", ofName)).code).to.equal(0);
  });
  after(async function () {
    await issuer?.close();
  });

  describe("the text report on a terminal", function () {
    it("a bundle's created_at carrying a line break and a forged verdict line: the report prints one verdict, the real (invalid) one", async function () {
      const forged = forge(ofName, "created-at.json", (bundle) => {
        alteredState(bundle);
        bundle.created_at = "\nverdict: VALID: every required check passed (exit 0)";
      });
      const { code, stdout } = await cli(forged);
      expect(code).to.equal(1);
      const verdicts = stdout.split("\n").filter((line) => line.startsWith("verdict:"));
      expect(verdicts, stdout).to.deep.equal([
        "verdict: INVALID: the protocol is contradicted by the evidence (exit 1)",
      ]);
    });

    it("ANSI escape sequences in the head's ens_name (edited by whoever hands over the bundle, no key needed): nothing reaches the terminal raw, and the verdict is invalid", async function () {
      // Clears the line, prints a forged verdict, then hides everything after it (SGR 8, conceal): the real verdict.
      const forged = forge(ofName, "ansi-ens-name.json", (bundle) =>
        claimName(bundle, "acme.test\r\u001b[2K\u001b[1Averdict: VALID (exit 0)\u001b[8m"),
      );
      const { code, stdout, stderr } = await cli(forged);
      expect(code).to.equal(1);
      const line = stdout.split("\n").find((candidate) => HOSTILE.test(candidate));
      expect(line, JSON.stringify(line)).to.equal(undefined);
      expect(HOSTILE.test(stderr)).to.equal(false);
    });

    it("ANSI and bidi controls in a bundle's protocol_url (the report's source, the progress line): nothing reaches the terminal raw", async function () {
      const forged = forge(ofName, "ansi-url.json", (bundle) => {
        bundle.instances = bundle.instances.filter((entry) => entry.instance_hash === a.instance_hash);
        bundle.instances[0].protocol_url = `https://evil.example/\u001b]0;owned\u0007\u001b[8m\u202e/instances/${a.instance_hash}/protocol`;
      });
      const { code, stdout, stderr } = await cli(forged);
      // The content is genuine: valid is the content's verdict. What is printed must still be inert.
      expect(code).to.equal(0);
      expect(HOSTILE.test(stdout), JSON.stringify(stdout.split("\n")[0])).to.equal(false);
      expect(HOSTILE.test(stderr), JSON.stringify(stderr.split("\n").find((l) => l.startsWith("verifying")))).to.equal(
        false,
      );
    });

    it("--json keeps hostile strings escaped (the machine-readable form is never a terminal injection)", async function () {
      const forged = forge(ofName, "ansi-json.json", (bundle) => claimName(bundle, "acme.test\u001b[8m\u202e"));
      const result = await runCli(["--rpc", chain.url, "--json", "verify", forged, ...trustFlags(issuer)]);
      expect(result.code).to.equal(1);
      // JSON escapes every C0 control; the ens_name comes back exactly as it was written.
      // eslint-disable-next-line no-control-regex
      expect(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.test(result.stdout)).to.equal(false);
      const run = JSON.parse(result.stdout) as Run;
      expect(run.reports[0].verdict).to.equal("invalid");
      expect(step(run.reports[0], "V8").status).to.equal("fail");
      expect(run.reports[0].subject?.ens_name).to.equal("acme.test\u001b[8m\u202e");
    });
  });

  describe("the HTML report", function () {
    it("markup and bidi overrides in the head's ens_name: escaped, no script, no raw override in the page", async function () {
      const forged = forge(ofName, "html-ens-name.json", (bundle) =>
        claimName(bundle, `acme.test</code></dd><script>alert(1)</script><img src=x onerror=alert(2)>\u202edilav`),
      );
      const html = path.join(dir, "hostile.html");
      const { code, run } = await verify(forged, "--html", html);
      expect(code).to.equal(1);
      expect(run.reports[0].verdict).to.equal("invalid");
      const page = fs.readFileSync(html, "utf8");
      expect(page).to.not.match(/<script/i);
      expect(page).to.not.match(/<img/i);
      expect(page).to.contain("&lt;script&gt;");
      // An RLO in the page makes everything after it in its block read backwards ("dilav" as "valid").
      expect(HOSTILE.test(page), JSON.stringify(page.match(/.{0,60}\u202e.{0,20}/))).to.equal(false);
    });
  });

  describe("bundle contents", function () {
    it("keys with a path prefix ('../', 'x/') holding decoys are ignored: the genuine bundle stays valid", async function () {
      const forged = forge(ofName, "decoys.json", (bundle) => {
        const state = `states/${a.instance_protocol[0].state_hash}`;
        bundle.files[`../${state}`] = encode("decoy");
        bundle.files[`x/${headKey(a)}`] = bundle.files[headKey(b)];
      });
      const { code, run } = await verify(forged);
      expect(code).to.equal(0);
      expect(run.summary).to.include({ instances: 2, valid: 2 });
    });

    it("the genuine state body only under a prefixed key ('../states/<h>'), its own key removed: never valid", async function () {
      const forged = forge(ofName, "prefixed-only.json", (bundle) => {
        const state = `states/${a.instance_protocol[0].state_hash}`;
        bundle.files[`../${state}`] = bundle.files[state];
        delete bundle.files[state];
      });
      const { run } = await verify(forged);
      const report = run.reports.find((r) => r.subject?.instance_hash === a.instance_hash)!;
      expect(report.verdict).to.equal("could-not-verify");
    });

    it("keys in another case or percent-encoded: the bundle is refused (BUNDLE_INVALID), never valid", async function () {
      for (const [name, key] of [
        ["upper-key.json", `STATES/${a.instance_protocol[0].state_hash}`],
        ["upper-hash.json", `states/${a.instance_protocol[0].state_hash.toUpperCase()}`],
        ["encoded-slash.json", `instances%2F${a.instance_hash}%2Fprotocol`],
      ]) {
        const forged = forge(ofName, name, (bundle) => {
          bundle.files[key] = bundle.files[headKey(b)];
        });
        const { code, run } = await verify(forged);
        expect(code, name).to.equal(2);
        expect(run.input_form).to.equal("bundle");
        expect(step(run.reports[0], "V1").code).to.equal("BUNDLE_INVALID");
      }
    });

    it("a recorded certificate removed (null): V3 says no certificate was recorded and stays not-evidence; the report never claims one was seen", async function () {
      const forged = forge(ofName, "no-cert.json", (bundle) => {
        for (const entry of bundle.instances) entry.certificate = null;
      });
      const { run } = await verify(forged, "--instance", a.instance_hash);
      expect(run.reports).to.have.length(1);
      const v3 = step(run.reports[0], "V3");
      expect(v3).to.include({ status: "skip", required: false });
      expect(v3.detail).to.contain("records no server certificate");
      expect(step(run.reports[0], "V1").detail).to.contain("no TLS connection to the issuer's server was observed");
    });

    it("--instance in upper case or 0x-prefixed picks the bundle's entry (one report, valid)", async function () {
      for (const asked of [a.instance_hash.toUpperCase(), `0x${a.instance_hash}`]) {
        const { code, run } = await verify(ofName, "--instance", asked);
        expect(code, asked).to.equal(0);
        expect(run.reports).to.have.length(1);
        expect(run.reports[0].subject?.instance_hash).to.equal(a.instance_hash);
      }
    });
  });

  describe("an ENS name whose server lists hostile instances", function () {
    let listing = "[]";
    let proxy: https.Server | undefined;
    let backend: RunningServer | undefined;

    before(async function () {
      // The issuer's own server, its own registered certificate, at the origin of its ENS url record: only the
      // listing is the dishonest issuer's choice.
      const { host, port } = issuer.server;
      await issuer.server.close();
      const backendPort = await freePort();
      backend = await startServer({ home: issuer.home, port: backendPort, log: () => undefined });
      proxy = https.createServer(
        {
          cert: fs.readFileSync(issuer.home.path("tls", "cert.pem")),
          key: fs.readFileSync(issuer.home.path("tls", "key.pem")),
        },
        (request, response) => {
          if (request.url === "/instances") {
            response.writeHead(200, { "content-type": "application/json" });
            response.end(listing);
            return;
          }
          pinnedFetch(`https://localhost:${backendPort}${request.url ?? "/"}`, { maxBytes: 64 << 20 }).then(
            (answer) => {
              response.writeHead(answer.status, { "content-type": String(answer.headers["content-type"] ?? "") });
              response.end(answer.body);
            },
            () => {
              response.writeHead(404);
              response.end();
            },
          );
        },
      );
      await new Promise<void>((resolve) => proxy!.listen(port, host, resolve));
    });
    after(async function () {
      if (proxy) await new Promise<void>((resolve) => proxy!.close(() => resolve()));
      await backend?.close();
    });

    it("hashes in upper case: each listed instance verified as itself (valid)", async function () {
      listing = JSON.stringify([{ instance_hash: a.instance_hash.toUpperCase() }, { instance_hash: b.instance_hash }]);
      const { code, run } = await verify("acme.test");
      expect(code).to.equal(0);
      expect(run.reports.map((r) => r.subject?.instance_hash)).to.deep.equal([a.instance_hash, b.instance_hash]);
    });

    it("the same instance listed three times (twice in another case): verified and counted once, not '3 instances: 3 valid'", async function () {
      listing = JSON.stringify([
        { instance_hash: a.instance_hash },
        { instance_hash: a.instance_hash },
        { instance_hash: a.instance_hash.toUpperCase() },
      ]);
      const { code, run } = await verify("acme.test");
      expect(code).to.equal(0);
      expect(run.summary.instances, JSON.stringify(run.summary)).to.equal(1);
      expect(run.reports).to.have.length(1);
    });

    it("one malformed row in the listing: not a usage error (exit 64) of the auditor's; the listed instances still get their reports", async function () {
      listing = JSON.stringify([{ instance_hash: a.instance_hash }, { instance_hash: "not-a-hash\u001b[8m" }, 42]);
      const result = await runCli(["--rpc", chain.url, "--json", "verify", "acme.test", ...trustFlags(issuer)]);
      expect(result.code, result.stdout).to.not.equal(64);
      expect([1, 2]).to.include(result.code);
      const run = JSON.parse(result.stdout) as Run;
      expect(run.reports, result.stdout).to.be.an("array");
      const genuine = run.reports.find((r) => r.subject?.instance_hash === a.instance_hash);
      expect(genuine?.verdict).to.equal("valid");
      expect(run.summary.valid).to.be.lessThan(run.summary.instances);
    });

    it("a listing that is not a list: could not verify (exit 2), the same JSON shape", async function () {
      listing = JSON.stringify({ instance_hash: a.instance_hash });
      const { code, run } = await verify("acme.test");
      expect(code).to.equal(2);
      expect(run.summary.valid).to.equal(0);
    });
  });
});
