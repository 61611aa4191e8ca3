import { expect } from "chai";
import net from "node:net";
import tls from "node:tls";
import { sha256Hex } from "../../src/chain/hash";
import { isStatetrailError } from "../../src/errors";
import {
  FetchError,
  normalizeFingerprint,
  pinnedFetch,
  SseParser,
  type PeerCertificate,
  type SseEvent,
} from "../../src/net/pinned-fetch";
import { startServer, type RunningServer } from "../../src/server/https";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "./fixtures";

async function rejection(promise: Promise<unknown>): Promise<FetchError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, "expected a rejection").to.be.instanceOf(Error);
  return error as FetchError;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)),
  );
}

describe("net: pinned fetch", function () {
  this.timeout(20_000);
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  let requests = 0;

  before(async () => {
    cert = makeCertificate();
    fixture = makeHome();
    fixture.home.writeProtocol(fixture.protocol(2));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      mount: (app) => {
        app.get("/test/redirect", (_req, res) => res.redirect(302, `/models/${fixture.modelHash}`));
        app.get("/test/endless", (_req, res) => {
          const chunk = Buffer.alloc(64 * 1024, 0x20);
          const pump = (): void => {
            while (!res.destroyed && res.write(chunk));
            if (!res.destroyed) res.once("drain", pump);
          };
          pump();
        });
      },
    });
    server.server.on("request", () => (requests += 1));
  });

  after(async () => {
    await server?.close();
    fixture?.cleanup();
  });

  const modelUrl = (): string => `${server.url}/models/${fixture.modelHash}`;

  it("normalises fingerprints written in the usual forms", () => {
    const colons = cert.fingerprint.toUpperCase().match(/.{2}/g)!.join(":");
    expect(normalizeFingerprint(colons)).to.equal(cert.fingerprint);
    expect(normalizeFingerprint("0x" + cert.fingerprint.toUpperCase())).to.equal(cert.fingerprint);
    expect(() => normalizeFingerprint("abcd")).to.throw(/fingerprint/);
  });

  it("succeeds with the right fingerprint and returns the peer certificate", async () => {
    const before = requests;
    const response = await pinnedFetch(modelUrl(), { fingerprint: cert.fingerprint });
    expect(response.status).to.equal(200);
    expect(response.body.equals(fixture.modelBytes)).to.equal(true);
    expect(requests).to.equal(before + 1);
    const { certificate } = response;
    expect(certificate.fingerprint).to.equal(cert.fingerprint);
    expect(sha256Hex(certificate.der)).to.equal(cert.fingerprint);
    expect(certificate.subject).to.contain("CN=localhost");
    const now = Date.now() / 1000;
    expect(certificate.notBefore).to.be.within(now - 24 * 3600 - 120, now);
    expect(certificate.notAfter).to.be.within(now + 364 * 24 * 3600, now + 366 * 24 * 3600);
  });

  it("accepts the fingerprint with colons and in upper case", async () => {
    const colons = cert.fingerprint.toUpperCase().match(/.{2}/g)!.join(":");
    const response = await pinnedFetch(modelUrl(), { fingerprint: colons });
    expect(response.status).to.equal(200);
  });

  it("fails with TLS_FAILED on a wrong fingerprint, before any request reaches the server", async () => {
    const before = requests;
    const error = await rejection(pinnedFetch(modelUrl(), { fingerprint: sha256Hex("another certificate") }));
    expect(isStatetrailError(error, "TLS_FAILED")).to.equal(true);
    expect(error.message).to.contain(cert.fingerprint);
    // Give a stray request time to arrive, if one had been sent.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(requests).to.equal(before);
  });

  it("lets a predicate decide, with the certificate at hand", async () => {
    const seen: PeerCertificate[] = [];
    const before = requests;
    const error = await rejection(
      pinnedFetch(modelUrl(), {
        fingerprint: (_fingerprint, certificate) => {
          seen.push(certificate);
          return false;
        },
      }),
    );
    expect(error.code).to.equal("TLS_FAILED");
    expect(seen).to.have.length(1);
    expect(seen[0].fingerprint).to.equal(cert.fingerprint);
    expect(requests).to.equal(before);
    const ok = await pinnedFetch(modelUrl(), { fingerprint: (fingerprint) => fingerprint === cert.fingerprint });
    expect(ok.status).to.equal(200);
  });

  it("without a pin still captures the certificate for the verifier", async () => {
    const response = await pinnedFetch(modelUrl());
    expect(response.certificate.fingerprint).to.equal(cert.fingerprint);
    expect(response.certificate.der.length).to.be.greaterThan(500);
  });

  it("aborts as soon as a body exceeds maxBytes (declared or streamed)", async () => {
    const declared = await rejection(pinnedFetch(modelUrl(), { fingerprint: cert.fingerprint, maxBytes: 10 }));
    expect(declared.code).to.equal("FETCH_FAILED");
    expect(declared.message).to.match(/too large/);
    // The endless body never ends: only the limit can settle this request.
    const streamed = await rejection(
      pinnedFetch(`${server.url}/test/endless`, { fingerprint: cert.fingerprint, maxBytes: 256 * 1024 }),
    );
    expect(streamed.code).to.equal("FETCH_FAILED");
    expect(streamed.message).to.match(/too large/);
  });

  it("does not follow redirects", async () => {
    const response = await pinnedFetch(`${server.url}/test/redirect`, { fingerprint: cert.fingerprint });
    expect(response.status).to.equal(302);
    expect(response.headers.location).to.equal(`/models/${fixture.modelHash}`);
  });

  it("reports a refused connection as FETCH_FAILED", async () => {
    const probe = net.createServer();
    const port = await listen(probe);
    await new Promise((resolve) => probe.close(resolve));
    const error = await rejection(pinnedFetch(`https://127.0.0.1:${port}/`, { fingerprint: cert.fingerprint }));
    expect(error.code).to.equal("FETCH_FAILED");
    expect(error.message).to.match(/ECONNREFUSED/);
  });

  it("times out on a server that never answers, at TCP or at HTTP level", async () => {
    const silentTcp = net.createServer(() => undefined);
    const silentHttp = tls.createServer({ cert: cert.certPem, key: cert.keyPem }, () => undefined);
    const tcpPort = await listen(silentTcp);
    const httpPort = await listen(silentHttp);
    try {
      // The message names the deadline that fired (the request's or the handshake's): the one asked for.
      for (const port of [tcpPort, httpPort]) {
        const error = await rejection(
          pinnedFetch(`https://127.0.0.1:${port}/`, { fingerprint: cert.fingerprint, timeoutMs: 300 }),
        );
        expect(error.code, `port ${port}`).to.equal("FETCH_FAILED");
        expect(error.message).to.match(/timed out (after 300 ms|during the TLS handshake \(300 ms\))/);
      }
    } finally {
      silentTcp.close();
      silentHttp.close();
    }
  });

  it("reports a server that doesn't speak TLS as TLS_FAILED", async () => {
    const plain = net.createServer((socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    const port = await listen(plain);
    try {
      const error = await rejection(pinnedFetch(`https://127.0.0.1:${port}/`, { fingerprint: cert.fingerprint }));
      expect(error.code).to.equal("TLS_FAILED");
    } finally {
      plain.close();
    }
  });

  it("refuses URLs that are not https", async () => {
    const error = await rejection(pinnedFetch(`http://127.0.0.1:${server.port}/`));
    expect(error.code).to.equal("INVALID_ARGUMENT");
  });

  it("parses event streams split anywhere, with CRLF, comments, multi-line data and retry", () => {
    const text =
      ': hello\r\nretry: 1500\r\n\r\nid: 7\r\nevent: state\r\ndata: {"a":1,\r\ndata:  "b":2}\r\n\r\ndata: plain\n\n';
    for (const size of [1, 2, 3, 7, text.length]) {
      const events: SseEvent[] = [];
      const parser = new SseParser((event) => events.push(event));
      for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
      expect(events, `chunk size ${size}`).to.deep.equal([
        { type: "state", data: '{"a":1,\n "b":2}', id: "7" },
        { type: "message", data: "plain", id: "7" },
      ]);
      expect(parser.retryMs).to.equal(1500);
      expect(parser.lastEventId).to.equal("7");
    }
  });

  it("bounds the size of a single event", () => {
    const parser = new SseParser(() => undefined, 100);
    expect(() => parser.push("data: " + "x".repeat(200))).to.throw(FetchError, /larger than 100/);
  });
});
