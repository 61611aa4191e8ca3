import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { type ProtocolHead } from "../../src/protocol/schema";
import { renderPage, verifyCommand, type InstanceView, type VerifyTarget } from "../../src/server/timeline";

const TEMPLATE = fs.readFileSync(path.join(__dirname, "../../src/server/timeline/index.html"), "utf8");
const HASH = "cd".repeat(32);

function shellWords(command: string): string[] {
  const args = command.replace(/^npx statetrail verify /, "");
  return execFileSync("bash", ["-c", `printf '%s\\0' ${args}`], { encoding: "utf8" })
    .split("\0")
    .slice(0, -1);
}
const unescape = (value: string): string =>
  value.replace(
    /&(lt|gt|quot|amp|#39);/g,
    (_, n: string) => ({ lt: "<", gt: ">", quot: '"', amp: "&", "#39": "'" })[n]!,
  );

/**
 * The timeline page's trust label (today's change): its command is built from the issuer's identity.json (the page)
 * or the instance's protocol (timeline.js). OUR page must name exactly the issuer and instance it displays, and no
 * value of identity.json may become markup or an extra shell word. (A dishonest issuer's page can show anything: an
 * auditor builds the command from what they were told, docs/AUDITOR.md.)
 */
describe("security (today): the timeline page's command", function () {
  it("names the displayed issuer (ENS name) and instance, and only them", function () {
    const target: VerifyTarget = { network: "sepolia", ensName: "acme.eth", issuerUrl: "https://audit.acme.example" };
    expect(shellWords(verifyCommand(target))).to.deep.equal(["acme.eth", "--network", "sepolia"]);
    expect(shellWords(verifyCommand(target, HASH))).to.deep.equal([
      "acme.eth",
      "--instance",
      HASH,
      "--network",
      "sepolia",
    ]);
    const page = renderPage(TEMPLATE, target);
    expect(page).to.contain('data-ens-name="acme.eth"').and.contain('data-issuer-url="https://audit.acme.example"');
    expect(unescape(/<code id="verify-command">([^<]*)<\/code>/.exec(page)![1])).to.equal(verifyCommand(target));
  });

  it("without a name: the issuer's own URL, the instance's protocol path", function () {
    const target: VerifyTarget = { network: "sepolia", ensName: null, issuerUrl: "https://audit.acme.example/" };
    expect(shellWords(verifyCommand(target, HASH))).to.deep.equal([
      `https://audit.acme.example/instances/${HASH}/protocol`,
      "--network",
      "sepolia",
    ]);
  });

  it("hostile identity values: escaped in the page, one shell word each in the command", function () {
    const ensName = `x.eth' --issuer 0x${"11".repeat(20)} '$(id)<script>alert(1)</script>"`;
    const issuerUrl = `https://a.example/'; touch /tmp/pwned-statetrail #<img src=x onerror=alert(1)>`;
    const network = `sepolia --registries 0x1,0x2,0x3 <b>`;
    for (const target of [
      { network, ensName, issuerUrl },
      { network, ensName: null, issuerUrl },
    ]) {
      const page = renderPage(TEMPLATE, target);
      expect(page).not.to.contain("<script>alert").and.not.to.contain("<img src=x").and.not.to.contain("<b>");
      const words = shellWords(verifyCommand(target, HASH));
      expect(words.filter((word) => word === "--network")).to.have.length(1);
      expect(words[words.length - 1]).to.equal(network);
      expect(words).not.to.include("--issuer").and.not.to.include("--registries");
      if (target.ensName) expect(words.slice(0, 3)).to.deep.equal([ensName, "--instance", HASH]);
      else expect(words[0]).to.equal(`${issuerUrl}/instances/${HASH}/protocol`);
    }
  });

  it("an instance's own page (protocol v3): the command names the issuer its head claims and this instance, as one word each", function () {
    const ensName = `x.eth' --issuer 0x${"11".repeat(20)} '$(id)<script>alert(1)</script>"`;
    const issuerUrl = `https://a.example/'; touch /tmp/pwned-statetrail #<img src=x onerror=alert(1)>`;
    for (const name of [ensName, null]) {
      const head = {
        instance_hash: HASH,
        status: "running",
        entries: 0,
        page_size: 1024,
        model_hash: HASH,
        chain_id: 31337,
        created: { block_nr: 1, transaction_hash: "0x" + "ab".repeat(32) },
        issuer: { address: "0x" + "11".repeat(20), ens_name: name, url: issuerUrl, certificate_fingerprint: HASH },
      } as unknown as ProtocolHead;
      const view: InstanceView = {
        hash: HASH,
        status: 200,
        head,
        page: { index: 0, count: 1, entries: [] },
        problem: null,
      };
      const page = renderPage(TEMPLATE, { network: "sepolia", ensName: "page.eth", issuerUrl: null }, view);
      expect(page).not.to.contain("<script>alert").and.not.to.contain("<img src=x");
      const command = unescape(/<code id="verify-command">([^<]*)<\/code>/.exec(page)![1]);
      const words = shellWords(command);
      expect(words.filter((word) => word === "--network")).to.have.length(1);
      expect(words).not.to.include("--issuer");
      if (name) expect(words).to.deep.equal([ensName, "--instance", HASH, "--network", "sepolia"]);
      else expect(words).to.deep.equal([`${issuerUrl}/instances/${HASH}/protocol`, "--network", "sepolia"]);
      expect(page).to.contain(`data-instance="${HASH}"`);
    }
  });
});
