import { execFileSync } from "node:child_process";
import { expect } from "chai";
import { JsonRpcProvider, Network } from "ethers";
import { renderReportHtml, type VerificationReport } from "../../src/verify";
import { checkedAgainst } from "../../src/verify/checked-against";
import { repeatCommand } from "../../src/verify/html";
import { refusedReport } from "../../src/verify/report";

const KEY = "0123456789abcdef0123456789abcdef";
const SCRIPT = "<script>alert(1)</script>";
const ATTR = `" onmouseover="alert(1)" x="`;
const SHELL = `'; touch /tmp/pwned-statetrail; echo '$(id)\`id\``;

/** The words a POSIX shell makes of a command line, without running anything but printf. */
function shellWords(command: string): string[] {
  const args = command.replace(/^npx statetrail verify /, "");
  const out = execFileSync("bash", ["-c", `printf '%s\\0' ${args}`], { encoding: "utf8" });
  return out.split("\0").slice(0, -1);
}

/**
 * checked_against and the HTML report (today's change): a hostile protocol or bundle controls the source URL, the
 * ENS name asked and everything in its protocol; the auditor's RPC URL may hold a credential. Nothing may become
 * markup in the report, a shell word the auditor did not intend in the repeat command, or a leaked credential.
 */
describe("security (today): checked_against and the HTML report", function () {
  function hostileReport(): VerificationReport {
    const source = `https://evil.example/${SCRIPT}${ATTR}${SHELL}/instances/${"ab".repeat(32)}/protocol`;
    const report = refusedReport(source, { ensName: `x${SCRIPT}.eth`, issuer: ATTR }, SCRIPT, "PROTOCOL_INVALID");
    return {
      ...report,
      expected: { instance_hash: "ab".repeat(32), issuer: ATTR, ens_name: null, matched: false },
      checked_against: {
        chain_id: 11155111,
        registries: { model: `0x${ATTR}`, certificate: SCRIPT, instance: SHELL },
        registries_source: `${SCRIPT}${ATTR}${SHELL}`,
        ens_registry: SCRIPT,
        rpc_url: `https://rpc.example/${SCRIPT}?${ATTR}=REDACTED`,
        block_number: 1,
        block_hash: SCRIPT,
      },
    };
  }

  it("no field of checked_against, the source or the question becomes markup or an attribute", function () {
    const html = renderReportHtml(hostileReport());
    expect(html).not.to.match(/<script/i);
    // Text content may hold the quote (harmless there); no tag may: '<' and '>' of data are escaped, so every
    // tag in the page is the report's own markup.
    const tags = html.match(/<[^>]*>/g) ?? [];
    // Inside a tag, data can only be a double-quoted attribute value (its quotes escaped): outside those values,
    // no tag holds anything of the payloads (an attribute of their own, a tag of their own).
    const outsideValues = tags.map((tag) => tag.replace(/="[^"]*"/g, '=""'));
    expect(outsideValues.filter((tag) => /onmouseover|alert|pwned|script/i.test(tag))).to.deep.equal([]);
    expect(html).to.contain("&lt;script&gt;alert(1)&lt;/script&gt;");
  });

  it("the repeat command quotes every hostile word: the shell gets exactly the intended words", function () {
    const report = hostileReport();
    const command = repeatCommand(report);
    const words = shellWords(command);
    expect(words[0]).to.equal(report.source);
    expect(words).to.include("--registries");
    expect(words).to.include(`0x${ATTR},${SCRIPT},${SHELL}`);
    expect(words).to.include(`https://rpc.example/${SCRIPT}?${ATTR}=REDACTED`);
    // With the ENS name asked, the name is the target, quoted as one word.
    const byName = repeatCommand({ ...report, expected: { ...report.expected!, ens_name: `x${SCRIPT}.eth` } });
    expect(shellWords(byName).slice(0, 3)).to.deep.equal([`x${SCRIPT}.eth`, "--instance", "ab".repeat(32)]);
  });

  it("an RPC credential in the URL is never in checked_against (path, query value, query name, userinfo)", async function () {
    const given = [
      `https://rpc.example/v3/${KEY}`,
      `https://rpc.example/rpc?apikey=${KEY}`,
      `https://rpc.example/rpc?${KEY}`,
      `https://rpc.example/rpc?a=1&${KEY}&b=2`,
      `https://user:${KEY}@rpc.example/rpc`,
      `https://rpc.example/rpc#${KEY}`,
    ];
    for (const url of given) {
      const provider = new JsonRpcProvider(url, Network.from(11155111), { staticNetwork: true });
      try {
        const checked = await checkedAgainst(
          { chainId: 11155111, registries: { model: "0x1", certificate: "0x2", instance: "0x3" }, source: "x" },
          provider,
          null,
          false,
        );
        expect(checked.rpc_url, url).to.be.a("string");
        expect(checked.rpc_url, url).not.to.contain(KEY);
        expect(checked.rpc_url, url).to.match(/^https:\/\/rpc\.example\//);
        const html = renderReportHtml({ ...hostileReport(), checked_against: checked });
        expect(html, url).not.to.contain(KEY);
      } finally {
        provider.destroy();
      }
    }
  });

  it("ordinary query names stay (apikey=REDACTED), so the endpoint is still recognisable", async function () {
    const provider = new JsonRpcProvider(`https://rpc.example/rpc?apikey=${KEY}&x=1`, Network.from(1), {
      staticNetwork: true,
    });
    try {
      const checked = await checkedAgainst(
        { chainId: 1, registries: { model: "0x1", certificate: "0x2", instance: "0x3" }, source: "x" },
        provider,
        null,
        false,
      );
      expect(checked.rpc_url).to.equal("https://rpc.example/rpc?apikey=REDACTED&x=REDACTED");
    } finally {
      provider.destroy();
    }
  });
});
