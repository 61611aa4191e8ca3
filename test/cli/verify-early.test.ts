import type http from "node:http";
import type tls from "node:tls";
import { expect } from "chai";
import { closePinnedConnections } from "../../src/net/pinned-fetch";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { runCli } from "../helpers/cli-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

/**
 * `verify <https URL>` sends V1's request for the protocol as it starts, while its modules load (cli/commands/verify.ts,
 * askEarly), and keeps the issuer's connections alive (pinnedFetcher's reuse): V1 takes that answer instead of asking
 * again, every later request is pinned to the certificate it came with, and the report is the same.
 */
describe("verify <url>: V1's request sent early, connections kept per pin (issue 14)", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let x: InstanceProtocol;
  const seen: Array<{ path: string; connection: tls.TLSSocket }> = [];

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "acme" });
    x = await runRefundRequest(issuer);
    issuer.server.server.on("request", (request: http.IncomingMessage) =>
      seen.push({ path: request.url ?? "", connection: request.socket as tls.TLSSocket }),
    );
  });
  beforeEach(() => (seen.length = 0));
  afterEach(() => closePinnedConnections());
  after(async function () {
    await issuer?.close();
  });

  const protocolUrl = (): string => `${issuer.identity.record.url}/instances/${x.instance_hash}/protocol`;

  it("asks for the protocol once, and V1 records the certificate of the connection it came over", async function () {
    const result = await runCli([
      "--rpc",
      chain.url,
      "--json",
      "--quiet",
      "verify",
      protocolUrl(),
      ...trustFlags(issuer),
    ]);
    expect(result.code, result.stdout).to.equal(0);
    const report = (
      JSON.parse(result.stdout) as {
        reports: Array<{ verdict: string; steps: Array<{ id: string; status: string; detail: string }> }>;
      }
    ).reports[0];
    expect(report.verdict).to.equal("valid");
    const protocolPath = new URL(protocolUrl()).pathname;
    expect(seen.filter((s) => s.path === protocolPath).length, "GETs of the protocol").to.equal(1);
    // V1's observation (the certificate of the early answer's connection) is the server's, and V3 checked it.
    const steps = report.steps;
    const v1 = steps.find((step) => step.id === "V1")!;
    expect(v1.detail).to.include(`server certificate ${issuer.server.fingerprint.slice(0, 10)}`);
    expect(steps.find((step) => step.id === "V3")!.status).to.equal("pass");
    // Fewer connections than requests: kept alive; every one presented the server's (only) certificate.
    const connections = new Set(seen.map((s) => s.connection));
    expect(seen.length).to.be.greaterThan(connections.size);
  });

  it("a usage error sends nothing to the issuer's server", async function () {
    const result = await runCli(["--rpc", chain.url, "verify", protocolUrl(), "--issuer", "not-an-address"]);
    expect(result.code).to.equal(64);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen.length).to.equal(0);
  });

  it("an early answer refused (404) is V1's finding as before, and not asked for again", async function () {
    const missing = `${issuer.identity.record.url}/instances/${"ab".repeat(32)}/protocol`;
    const result = await runCli(["--rpc", chain.url, "--json", "--quiet", "verify", missing, ...trustFlags(issuer)]);
    expect(result.code).to.equal(2);
    const v1 = (
      JSON.parse(result.stdout) as { reports: Array<{ steps: Array<{ id: string; status: string; detail: string }> }> }
    ).reports[0].steps.find((step) => step.id === "V1")!;
    expect(v1.status).to.equal("error");
    expect(v1.detail).to.match(/HTTP 404/);
    expect(seen.filter((s) => s.path === new URL(missing).pathname).length).to.equal(1);
  });
});
