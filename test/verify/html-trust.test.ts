import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "hardhat";
import { connect, REDACTED } from "../../src/chain/provider";
import { createEngine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { renderReportHtml, type VerificationReport } from "../../src/verify";
import { repeatCommand } from "../../src/verify/html";
import { refusedReport } from "../../src/verify/report";
import { runCli } from "../helpers/cli-run";
import { forgeScenario, verifyForged } from "../helpers/forge";
import { startHttpRpcBridge } from "../helpers/http-rpc";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

/** The value of `<dd data-field="…">` in the "Checked against" list, tags removed. */
function field(html: string, name: string): string {
  const match = new RegExp(`<dd data-field="${name}">(.*?)</dd>`).exec(html);
  expect(match, `field ${name}`).not.to.equal(null);
  return unescape(match![1].replace(/<[^>]+>/g, ""));
}

function commandIn(html: string): string {
  const match = /<pre class="repeat-command"><code>(.*?)<\/code><\/pre>/.exec(html);
  expect(match, "the command line").not.to.equal(null);
  return unescape(match![1]);
}

function unescape(value: string): string {
  return value.replace(/&(lt|gt|quot|amp);/g, (_, name: string) => ({ lt: "<", gt: ">", quot: '"', amp: "&" })[name]!);
}

/**
 * Issue 15, item 10: the HTML report names what it trusted (chain id, registries and where they came from, the ENS
 * registry, the RPC endpoint without credentials, the block number and hash it pinned its reads to) and the command
 * line that repeats the check.
 */
describe("HTML report: what the verification trusted, and how to repeat it", function () {
  it("names chain, registries, RPC endpoint without its key, block and hash, and the command", async function () {
    const { env, run } = await forgeScenario();
    const bridge = await startHttpRpcBridge();
    const key = "0123456789abcdef0123456789abcdef";
    const provider = await connect({ rpcUrl: `${bridge.base}/v3/${key}?apikey=s3cr3t-token`, ensRegistry: null });
    let report: VerificationReport;
    try {
      report = await verifyForged(env, { url: run.url }, { provider });
    } finally {
      provider.destroy();
      await bridge.close();
    }
    expect(report.verdict).to.equal("valid");
    const html = renderReportHtml(report, run.protocol);
    expect(html).to.include("<h2>Checked against</h2>");
    expect(html).not.to.contain(key).and.not.to.contain("s3cr3t");

    const { registries } = env.trusted;
    const block = (await ethers.provider.getBlock(report.block_number!))!;
    expect(field(html, "chain_id")).to.equal("31337");
    expect(field(html, "registries_source")).to.equal("forge");
    expect(field(html, "model")).to.equal(registries.model);
    expect(field(html, "certificate")).to.equal(registries.certificate);
    expect(field(html, "instance")).to.equal(registries.instance);
    expect(field(html, "ens_registry")).to.equal("none: ENS not read");
    const rpc = `${bridge.base}/v3/${REDACTED}?apikey=${REDACTED}`;
    expect(field(html, "rpc_url")).to.equal(`${rpc} (credentials removed: ${REDACTED} stands for the API key)`);
    expect(field(html, "block_number")).to.equal(String(report.block_number));
    expect(field(html, "block_hash")).to.equal(block.hash);
    expect(commandIn(html)).to.equal(
      `npx statetrail verify ${run.url} --registries ${registries.model},${registries.certificate},${registries.instance}` +
        ` --chain-id 31337 --rpc '${rpc}' --no-ens --no-conformance`,
    );
  });

  it("a report refused before the chain was read says it records no chain, and still gives the command", function () {
    const report = refusedReport("acme.test", { ensName: "acme.test" }, "TLS_FAILED: no", "TLS_FAILED");
    const html = renderReportHtml(report);
    expect(html).to.include('data-checked-against="none"');
    expect(commandIn(html)).to.equal("npx statetrail verify acme.test");
  });

  it("repeatCommand: the ENS form with the instance asked, --network for deployments/<network>", function () {
    const report = refusedReport("https://x.example/instances/ab/protocol", {}, "d", "TLS_FAILED");
    const hash = "ab".repeat(32);
    const command = repeatCommand({
      ...report,
      expected: { instance_hash: hash, issuer: "0x" + "1".repeat(40), ens_name: "acme.eth", matched: true },
      checked_against: {
        chain_id: 11155111,
        registries: { model: "0xm", certificate: "0xc", instance: "0xi" },
        registries_source: "deployments/sepolia",
        ens_registry: "0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e",
        rpc_url: "https://ethereum-sepolia-rpc.publicnode.com",
        block_number: 1,
        block_hash: "0x" + "0".repeat(64),
      },
    });
    expect(command).to.equal(
      `npx statetrail verify acme.eth --instance ${hash} --network sepolia --rpc https://ethereum-sepolia-rpc.publicnode.com`,
    );
  });

  describe("with the CLI on a real chain: the command in the report repeats the check", function () {
    this.timeout(120_000);
    const node = useHardhatNode();
    let issuer: TestIssuer;
    let dir: string;

    before(async function () {
      issuer = await setupIssuer(node.url, { label: "repeatable" });
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-html-trust-"));
    });

    after(async function () {
      await issuer?.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("`verify --html` names the deployment, the RPC and the block; running its command gives the same verdict", async function () {
      const examples = path.resolve(__dirname, "..", "..", "examples");
      const engine = createEngine({
        engine: "local",
        handlers: path.join(examples, "refund-request.handlers.js"),
        skipWaits: true,
      });
      const model = await loadModel(path.join(examples, "refund-request.asl.json"));
      const protocol = await issuer
        .tracker(engine)
        .run(model, fs.readFileSync(path.join(examples, "refund-request.input.json")));
      const url = `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol`;
      const env = { STATETRAIL_DEPLOYMENTS_DIR: issuer.deploymentsDir };
      const file = path.join(dir, "report.html");
      const first = await runCli(["verify", url, "--rpc", node.url, "--html", file, "--quiet"], env);
      expect(first.code, first.stderr).to.equal(0);
      const html = fs.readFileSync(file, "utf8");

      const { registries } = issuer;
      expect(field(html, "chain_id")).to.equal("31337");
      expect(field(html, "registries_source")).to.equal("deployments/localhost");
      expect([field(html, "model"), field(html, "certificate"), field(html, "instance")]).to.deep.equal([
        registries.model,
        registries.certificate,
        registries.instance,
      ]);
      expect(field(html, "ens_registry")).to.equal(issuer.deployment.ens.registry);
      expect(field(html, "rpc_url")).to.equal(node.url.replace(/\/$/, ""));
      const blockNumber = Number(field(html, "block_number"));
      const block = (await issuer.provider.getBlock(blockNumber))!;
      expect(field(html, "block_hash")).to.equal(block.hash);
      const command = commandIn(html);
      expect(command).to.equal(`npx statetrail verify ${url} --network localhost --rpc ${node.url.replace(/\/$/, "")}`);

      // Anyone with the command (and their own copy of deployments/localhost) repeats it.
      const again = await runCli([...command.split(" ").slice(2), "--json", "--quiet"], env);
      expect(again.code, again.stderr).to.equal(0);
      const printed = JSON.parse(again.stdout) as VerificationReport | { reports: VerificationReport[] };
      const [report] = "reports" in printed ? printed.reports : [printed];
      expect(report.verdict).to.equal("valid");
      expect(report.checked_against).to.deep.include({ chain_id: 31337, registries_source: "deployments/localhost" });
      expect(report.checked_against!.block_number).to.be.at.least(blockNumber);
    });
  });
});
