import { expect } from "chai";
import { writeIdentity } from "../../src/identity/record";
import { pinnedFetch } from "../../src/net/pinned-fetch";
import { startServer, type RunningServer } from "../../src/server/https";
import { renderPage, verifyCommand } from "../../src/server/timeline";
import { makeCertificate, makeHome, writeTestIdentity, type TestCertificate, type TestHome } from "./fixtures";

/**
 * Issue 15, item 10, without a browser: the page's HTML says that it is the issuer's claim and carries the command
 * that checks it, in the form the issuer's identity allows (ENS name, else the protocol URL), so that it shows
 * without JavaScript. (test/browser/trust-label.test.ts checks it in Chromium, with JavaScript on and off.)
 */
describe("timeline page: the issuer's claim and the command that checks it, in the HTML", function () {
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;

  before(async function () {
    cert = makeCertificate();
    fixture = makeHome();
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      timeline: true,
      log: () => undefined,
    });
  });

  after(async function () {
    await server?.close();
    fixture?.cleanup();
  });

  async function page(): Promise<{ html: string; command: string; etag: string | null }> {
    const response = await pinnedFetch(`${server.url}/`, { fingerprint: cert.fingerprint });
    const html = response.body.toString("utf8");
    const command = /<code id="verify-command">([^<]*)<\/code>/.exec(html)?.[1];
    expect(command, "the command is in the HTML").to.be.a("string");
    expect(html).to.include("The issuer's server says so — this is not an independent verdict.");
    expect(html).not.to.match(/\{\{[a-z_]+\}\}/);
    return { html, command: command!, etag: response.headers["etag"] as string | null };
  }

  it("without an identity: the URL form with placeholders", async function () {
    const { command } = await page();
    expect(command).to.equal(
      "npx statetrail verify &lt;this server&#39;s URL&gt;/instances/&lt;instance hash&gt;/protocol --network &lt;network&gt;",
    );
  });

  it("with an ENS name: the ENS form, which checks every instance the issuer lists", async function () {
    const record = writeTestIdentity(fixture.home, cert, server.port);
    const { html, command } = await page();
    expect(command).to.equal(`npx statetrail verify ${record.ens_name} --network ${record.network}`);
    expect(html).to.include(`data-ens-name="${record.ens_name}"`).and.include(`data-network="${record.network}"`);
    expect(html).to.include("add --instance &lt;hash&gt; for one");
  });

  it("without an ENS name: the protocol URL at the registered server, and the page follows identity changes", async function () {
    const record = writeTestIdentity(fixture.home, cert, server.port);
    const before = await page();
    writeIdentity(fixture.home, { ...record, ens_name: null });
    const after = await page();
    expect(after.command).to.equal(
      `npx statetrail verify ${record.url}/instances/&lt;instance hash&gt;/protocol --network ${record.network}`,
    );
    expect(after.etag).not.to.equal(before.etag);
  });

  it("escapes what it fills in, and quotes words the shell would split", function () {
    const html = renderPage('<code id="c">{{verify_command}}</code><i data-x="{{ens_name}}"></i>', {
      network: "localhost",
      ensName: `x"><script>alert(1)</script>.eth`,
      issuerUrl: null,
    });
    expect(html).not.to.include("<script>");
    expect(html).to.include("&lt;script&gt;").and.include('data-x="x&quot;&gt;&lt;script');
    expect(
      verifyCommand({ network: "local net", ensName: null, issuerUrl: "https://a.example/" }, "ab".repeat(32)),
    ).to.equal(`npx statetrail verify https://a.example/instances/${"ab".repeat(32)}/protocol --network 'local net'`);
    expect(
      verifyCommand({ network: "sepolia", ensName: "acme.eth", issuerUrl: "https://a.example" }, "cd".repeat(32)),
    ).to.equal(`npx statetrail verify acme.eth --instance ${"cd".repeat(32)} --network sepolia`);
  });
});
