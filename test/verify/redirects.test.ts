import http from "node:http";
import https from "node:https";
import { type AddressInfo } from "node:net";
import { expect } from "chai";
import { generateCertificate } from "../../src/identity/certificate";
import { pinnedFetcher, storageFetcher, verifyProtocol } from "../../src/verify";
import { type Fetcher } from "../../src/verify/types";

/**
 * Finding 7 of issue 12: a hostile mirror (or issuer server) answering 302 must not make the auditor's machine
 * request the Location, which could be any internal URL (SSRF). Real servers: the first answers every request
 * with a redirect to the second, which records whether it was ever asked.
 */
interface Listening {
  url: string;
  hits: string[];
  close(): Promise<void>;
}

function listen(server: http.Server | https.Server, scheme: "http" | "https", hits: string[]): Promise<Listening> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `${scheme}://127.0.0.1:${port}`,
        hits,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

/** The internal service a redirect points at: answers 200 and records every request. */
function internal(): Promise<Listening> {
  const hits: string[] = [];
  return listen(
    http.createServer((request, response) => {
      hits.push(request.url ?? "");
      response.end("internal secret");
    }),
    "http",
    hits,
  );
}

function redirecting(target: string, status = 302, tls?: { certPem: string; keyPem: string }): Promise<Listening> {
  const hits: string[] = [];
  const handler: http.RequestListener = (request, response) => {
    hits.push(request.url ?? "");
    response.writeHead(status, { location: `${target}/latest/meta-data${request.url ?? ""}` });
    response.end();
  };
  return tls
    ? listen(https.createServer({ cert: tls.certPem, key: tls.keyPem }, handler), "https", hits)
    : listen(http.createServer(handler), "http", hits);
}

const HASH = "ab".repeat(32);

describe("no redirect is followed by the verifier (issue 12, finding 7)", function () {
  this.timeout(60_000);
  let target: Listening;
  const servers: Listening[] = [];

  beforeEach(async function () {
    target = await internal();
    servers.push(target);
  });
  afterEach(async function () {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  for (const status of [301, 302, 303, 307, 308]) {
    it(`an http:// mirror answering ${status}: refused, the Location is never requested`, async function () {
      const mirror = await redirecting(target.url, status);
      servers.push(mirror);
      const fetch: Fetcher = storageFetcher();
      const attempt = fetch(`${mirror.url}/instances/${HASH}/protocol`, { maxBytes: 1 << 20, timeoutMs: 10_000 });
      const error = await attempt.then(
        () => null,
        (caught: unknown) => caught as { code?: string; message: string },
      );
      expect(error, "the redirect must be refused").to.not.equal(null);
      expect(error!.code).to.equal("FETCH_FAILED");
      expect(error!.message).to.match(new RegExp(`HTTP ${status}.*redirect`));
      expect(mirror.hits).to.have.length(1);
      expect(target.hits, "the internal service was requested").to.deep.equal([]);
    });
  }

  it("the issuer's server answering 302 (pinned fetcher): refused, the Location is never requested", async function () {
    const issuer = await redirecting(target.url, 302, generateCertificate({ host: "localhost" }));
    servers.push(issuer);
    const attempt = pinnedFetcher(`${issuer.url}/instances/${HASH}/protocol`, { maxBytes: 1 << 20, timeoutMs: 10_000 });
    await attempt.then(
      () => expect.fail("the redirect was followed"),
      (error: { code?: string; message: string }) => {
        expect(error.code).to.equal("FETCH_FAILED");
        expect(error.message).to.contain("HTTP 302");
      },
    );
    expect(issuer.hits).to.have.length(1);
    expect(target.hits).to.deep.equal([]);
  });

  it("verifying a mirror URL whose server redirects: V1 could not read it, nothing else is requested", async function () {
    const mirror = await redirecting(target.url, 302);
    servers.push(mirror);
    const report = await verifyProtocol({
      input: { url: `${mirror.url}/instances/${HASH}/protocol` },
      // No chain is read before the protocol: V1 fails first and every later step is skipped.
      provider: null as never,
      trusted: { chainId: 31337, registries: { model: "0x", certificate: "0x", instance: "0x" }, source: "test" },
      mirror: {},
      ens: null,
    });
    expect(report.steps.find((step) => step.id === "V1")?.status).to.equal("error");
    expect(report.verdict).to.not.equal("valid");
    expect(target.hits).to.deep.equal([]);
  });
});
