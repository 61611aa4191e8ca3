import fs from "node:fs";
import path from "node:path";
import Ajv2020 from "ajv/dist/2020";
import { expect } from "chai";
import { freePort } from "../../src/chain/node";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { runCli } from "../helpers/cli-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

const ROOT = path.resolve(__dirname, "..", "..");
const SCHEMA = path.join(ROOT, "docs", "verification-report.schema.json");

/**
 * Issue 15, item 9: `verify --json` has one shape for every input form, documented by a JSON Schema
 * (docs/verification-report.schema.json, draft 2020-12). The real output of verify for a URL, a protocol file, a
 * bundle, an ENS name listing two instances, a mirror, and for what prevents verifying, validates against it.
 */
describe("verify --json: one shape, validated against its JSON Schema (issue 15, item 9)", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let x: InstanceProtocol;
  let dir: string;
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  const validate = ajv.compile(JSON.parse(fs.readFileSync(SCHEMA, "utf8")));

  const trust = (): string[] => trustFlags(issuer);

  /** Runs `verify --json`, checks the output against the schema, returns it. */
  async function printed(args: string[], rpc = chain.url) {
    const result = await runCli(["--rpc", rpc, "--json", "--quiet", "verify", ...args, ...trust()]);
    const output = JSON.parse(result.stdout) as {
      input_form: string;
      reports: Array<{ verdict: string; checked_against?: unknown }>;
      summary: { instances: number; exit_code: number };
      bundle?: unknown;
    };
    const valid = validate(output);
    expect(valid, `${args.join(" ")}: ${ajv.errorsText(validate.errors)}`).to.equal(true);
    expect(output.summary.exit_code, "the summary's exit code is the command's").to.equal(result.code);
    return output;
  }

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "acme" });
    x = await runRefundRequest(issuer);
    await runRefundRequest(issuer);
    dir = fs.mkdtempSync(path.join(issuer.home.path(), "json-"));
  });
  after(async function () {
    await issuer?.close();
  });

  it("a URL (saving a bundle): one report in reports, the bundle named", async function () {
    const bundle = path.join(dir, "x.bundle.json");
    const output = await printed([
      `${issuer.identity.record.url}/instances/${x.instance_hash}/protocol`,
      "--save-bundle",
      bundle,
    ]);
    expect(output.input_form).to.equal("url");
    expect(output.reports).to.have.length(1);
    expect(output.reports[0].verdict).to.equal("valid");
    expect(output.reports[0].checked_against, "the other engineer's field is allowed").to.be.an("object");
    expect(output.bundle).to.deep.equal({ file: bundle, instances: [x.instance_hash] });
  });

  it("a protocol file and a bundle: the same shape", async function () {
    const file = path.join(dir, "protocol.json");
    fs.writeFileSync(file, JSON.stringify(x));
    expect((await printed([file])).input_form).to.equal("file");
    const bundle = path.join(dir, "x.bundle.json");
    const offline = await printed([bundle]);
    expect(offline.input_form).to.equal("bundle");
    expect(offline.reports.map((r) => r.verdict)).to.deep.equal(["valid"]);
  });

  it("an ENS name listing two instances: the same shape, two reports and the summary", async function () {
    const output = await printed(["acme.test"]);
    expect(output.input_form).to.equal("ens-name");
    expect(output.summary).to.deep.equal({
      instances: 2,
      valid: 2,
      invalid: 0,
      could_not_verify: 0,
      valid_as_disclosed: 0,
      exit_code: 0,
    });
  });

  it("what prevents verifying (RPC down, a mirror that is not there): still the same shape", async function () {
    const port = await freePort();
    const down = await printed(["acme.test"], `http://127.0.0.1:${port}`);
    expect(down.reports[0].verdict).to.equal("could-not-verify");
    const mirror = await printed([`http://127.0.0.1:${port}/copy/instances/${x.instance_hash}/protocol`]);
    expect(mirror.input_form).to.equal("mirror");
    expect(mirror.summary.exit_code).to.equal(2);
  });

  it("a bundle whose input document discloses nothing: valid as disclosed, exit 3, the disclosure in the schema", async function () {
    const bundle = path.join(dir, "x.bundle.json");
    if (!fs.existsSync(bundle)) {
      await printed([`${issuer.identity.record.url}/instances/${x.instance_hash}/protocol`, "--save-bundle", bundle]);
    }
    const parsed = JSON.parse(fs.readFileSync(bundle, "utf8")) as { files: Record<string, string> };
    parsed.files[`instances/${x.instance_hash}/input`] = "";
    const withheld = path.join(dir, "x.withheld.bundle.json");
    fs.writeFileSync(withheld, JSON.stringify(parsed));
    const output = await printed([withheld]);
    const report = output.reports[0] as { verdict: string; disclosure?: { execution_input: string; replay: string } };
    expect(report.verdict).to.equal("valid-as-disclosed");
    expect(report.disclosure).to.include({ execution_input: "redacted", replay: "none" });
    expect(output.summary).to.include({ valid: 0, valid_as_disclosed: 1, exit_code: 3 });
  });

  it("the schema refuses the old shapes (a bare report, an array)", async function () {
    const output = await printed(["acme.test"]);
    expect(validate(output.reports[0])).to.equal(false);
    expect(validate(output.reports)).to.equal(false);
  });
});
