import { expect } from "chai";
import { X509Certificate } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import tls from "node:tls";
import { sha256Hex } from "../../src/chain/hash";
import {
  closePinnedConnections,
  FetchError,
  keptConnections,
  normalizeFingerprint,
  PinnedAgent,
  pinnedFetch,
  type PinnedResponse,
} from "../../src/net/pinned-fetch";
import { makeCertificate, type TestCertificate } from "../server/fixtures";

/** What the server saw of one request: the certificate of the connection it came over, and the pin it was sent with. */
interface Seen {
  connection: number;
  certificate: string;
  pin: string;
}

/**
 * An HTTPS server on one port whose certificate is chosen per connection (`choose`, by connection number): the same
 * origin presenting two certificates, as during a certificate change or to an attacker in the path. It answers every
 * request with the fingerprint of the certificate its connection presented, and records it with the request's
 * `x-pin` header (the pin the client used; "none" without).
 */
async function serve(
  certificates: TestCertificate[],
  choose: (connection: number) => number,
  port = 0,
): Promise<{ server: https.Server; url: string; port: number; seen: Seen[]; connections: () => number }> {
  const contexts = certificates.map((cert) => tls.createSecureContext({ cert: cert.certPem, key: cert.keyPem }));
  let connections = 0;
  const seen: Seen[] = [];
  const server = https.createServer(
    {
      cert: certificates[0].certPem,
      key: certificates[0].keyPem,
      SNICallback: (_name, callback) => callback(null, contexts[choose(connections++)]),
    },
    (request, response) => {
      const socket = request.socket as tls.TLSSocket;
      const certificate = sha256Hex(new X509Certificate((socket.getCertificate() as tls.PeerCertificate).raw).raw);
      seen.push({ connection: connectionOf(socket), certificate, pin: String(request.headers["x-pin"] ?? "none") });
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ certificate }));
    },
  );
  const ids = new WeakMap<object, number>();
  let next = 0;
  const connectionOf = (socket: object): number => {
    if (!ids.has(socket)) ids.set(socket, next++);
    return ids.get(socket)!;
  };
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(port, resolve));
  const bound = (server.address() as net.AddressInfo).port;
  return { server, url: `https://localhost:${bound}`, port: bound, seen, connections: () => connections };
}

async function close(server: https.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

async function rejection(promise: Promise<unknown>): Promise<FetchError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, "expected a rejection").to.be.instanceOf(FetchError);
  return error as FetchError;
}

/** A pooled GET of `url`, pinned to `pin` (or not), telling the server which pin it used. */
function get(url: string, pin?: string): Promise<PinnedResponse> {
  const header = pin === undefined ? "none" : normalizeFingerprint(pin);
  return pinnedFetch(`${url}/x`, { fingerprint: pin, reuse: true, headers: { "x-pin": header } });
}

/** The fingerprint the server says the connection presented (its answer's body). */
const servedOver = (response: PinnedResponse): string =>
  (JSON.parse(response.body.toString("utf8")) as { certificate: string }).certificate;

describe("net: pinned fetch keeps connections per origin and pin (keep-alive)", function () {
  this.timeout(30_000);
  let a: TestCertificate;
  let b: TestCertificate;

  before(() => {
    a = makeCertificate();
    b = makeCertificate();
  });
  afterEach(() => closePinnedConnections());

  it("reuses one connection for requests with the same pin, and returns its certificate every time", async () => {
    const site = await serve([a], () => 0);
    try {
      for (let i = 0; i < 4; i++) {
        const response = await get(site.url, a.fingerprint);
        expect(response.certificate.fingerprint).to.equal(a.fingerprint);
        expect(servedOver(response)).to.equal(a.fingerprint);
      }
      expect(site.connections(), "TLS connections").to.equal(1);
      expect(keptConnections()).to.equal(1);
      // Without `reuse`: a connection of its own, closed after the response, as before.
      await pinnedFetch(`${site.url}/x`, { fingerprint: a.fingerprint });
      expect(site.connections()).to.equal(2);
      closePinnedConnections();
      expect(keptConnections()).to.equal(0);
    } finally {
      await close(site.server);
    }
  });

  it("makes its TLS contexts without certificate authorities: Node's root store is never loaded for them", async () => {
    const site = await serve([a], () => 0);
    const original = tls.createSecureContext;
    const cas: unknown[] = [];
    tls.createSecureContext = (options?: tls.SecureContextOptions) => {
      cas.push(options?.ca);
      return original(options);
    };
    try {
      const response = await pinnedFetch(`${site.url}/x`, { fingerprint: a.fingerprint });
      expect(response.certificate.fingerprint).to.equal(a.fingerprint);
      expect(cas).to.deep.equal([[]]);
    } finally {
      tls.createSecureContext = original;
      await close(site.server);
    }
  });

  it("never sends a request over a connection made for another pin, or for none", async () => {
    const site = await serve([a], () => 0);
    try {
      await get(site.url, a.fingerprint);
      await get(site.url); // no pin: a connection of its own
      expect(site.connections()).to.equal(2);
      // Another pin: a new connection, checked, refused before any HTTP byte; the kept ones are not used.
      const refused = await rejection(get(site.url, b.fingerprint));
      expect(refused.code).to.equal("TLS_FAILED");
      expect(site.connections()).to.equal(3);
      expect(site.seen.map((s) => s.pin)).to.deep.equal([a.fingerprint, "none"]);
      // The same pin, written another way, uses the connection pinned to it.
      await get(site.url, a.fingerprint.toUpperCase().match(/.{2}/g)!.join(":"));
      await get(site.url);
      expect(site.connections()).to.equal(3);
      const byConnection = new Map<number, Set<string>>();
      for (const s of site.seen)
        byConnection.set(s.connection, (byConnection.get(s.connection) ?? new Set()).add(s.pin));
      for (const pins of byConnection.values()) expect(pins.size, "pins sent over one connection").to.equal(1);
    } finally {
      await close(site.server);
    }
  });

  it("on one origin presenting certificate A or B by connection, a request pinned to A only ever goes over an A connection", async () => {
    // Connections alternate A, B, A, B…; requests pinned to A, to B and unpinned run interleaved and in parallel.
    const site = await serve([a, b], (n) => n % 2);
    try {
      const pins = [a.fingerprint, b.fingerprint, undefined];
      const outcomes = await Promise.all(
        Array.from({ length: 48 }, (_, i) =>
          get(site.url, pins[i % 3]).then(
            (response) => ({ pin: pins[i % 3], response }),
            (error: unknown) => ({ pin: pins[i % 3], error: error as FetchError }),
          ),
        ),
      );
      let answered = 0;
      for (const outcome of outcomes) {
        if ("error" in outcome) {
          // Only a new connection presenting the other certificate: refused at the handshake.
          expect(outcome.error.code).to.equal("TLS_FAILED");
          expect(outcome.pin).to.not.equal(undefined);
          continue;
        }
        answered += 1;
        const { response, pin } = outcome;
        // What is returned is what that connection presented (V1's observation), and it is the pin.
        expect(response.certificate.fingerprint).to.equal(servedOver(response));
        if (pin !== undefined) expect(response.certificate.fingerprint).to.equal(pin);
      }
      expect(answered).to.be.greaterThan(16);
      // The server side: every pinned request came over a connection that presented its pin.
      for (const s of site.seen) if (s.pin !== "none") expect(s.certificate).to.equal(s.pin);
      expect(site.seen.filter((s) => s.pin === "none").length).to.equal(16);
      // Fewer connections than requests: they were reused.
      expect(site.connections()).to.be.lessThan(48);
    } finally {
      await close(site.server);
    }
  });

  it("across a restart of the origin with another certificate: the new one is observed, and a pin to the old one fails", async () => {
    const first = await serve([a], () => 0);
    const port = first.port;
    expect((await get(first.url, a.fingerprint)).certificate.fingerprint).to.equal(a.fingerprint);
    expect((await get(first.url)).certificate.fingerprint).to.equal(a.fingerprint);
    expect(keptConnections()).to.equal(2);
    await close(first.server);
    const second = await serve([b], () => 0, port);
    try {
      // The kept connections were to the old server: whether or not their close was seen yet, none answers.
      const unpinned = await get(second.url);
      expect(unpinned.certificate.fingerprint).to.equal(b.fingerprint);
      expect(servedOver(unpinned)).to.equal(b.fingerprint);
      const stale = await rejection(get(second.url, a.fingerprint));
      expect(stale.code).to.equal("TLS_FAILED");
      expect(stale.message).to.include(b.fingerprint);
      expect((await get(second.url, b.fingerprint)).certificate.fingerprint).to.equal(b.fingerprint);
      // The server with B never saw a request pinned to A.
      expect(second.seen.map((s) => s.pin)).to.deep.equal(["none", b.fingerprint]);
    } finally {
      await close(second.server);
    }
  });

  it("a kept connection is reused only by the agent that made and checked it", async () => {
    const site = await serve([a], () => 0);
    const agentA = new PinnedAgent({ fingerprint: a.fingerprint, keepAlive: true });
    const agentB = new PinnedAgent({ fingerprint: b.fingerprint, keepAlive: true });
    const request = (agent: https.Agent): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = https.get(`${site.url}/x`, { agent, headers: { "x-pin": "test" } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
      });
    try {
      expect(await request(agentA)).to.equal(200);
      await new Promise((resolve) => setImmediate(resolve));
      // Move agent A's kept connection into agent B's pool, as a mix-up of pools would.
      const [name] = Object.keys(agentA.freeSockets);
      const socket = agentA.freeSockets[name]!.pop()!;
      (agentB.freeSockets as Record<string, net.Socket[]>)[name] = [socket];
      const refused = (await request(agentB).then(
        () => undefined,
        (error: unknown) => error,
      )) as FetchError;
      expect(refused).to.be.instanceOf(FetchError);
      expect(refused.code).to.equal("TLS_FAILED");
      expect(socket.destroyed).to.equal(true);
      expect(site.seen.length, "requests the server received").to.equal(1);
    } finally {
      agentA.destroy();
      agentB.destroy();
      await close(site.server);
    }
  });

  it("refuses the server's TLS 1.2 renegotiation, which could present another certificate on a checked connection", async () => {
    let renegotiation: Error | null | undefined;
    const server = https.createServer(
      { cert: a.certPem, key: a.keyPem, maxVersion: "TLSv1.2" },
      (request: http.IncomingMessage, response: http.ServerResponse) => {
        const socket = request.socket as tls.TLSSocket;
        const sent = socket.renegotiate({ rejectUnauthorized: false }, (error) => {
          renegotiation = error;
          response.writeHead(200).end("{}");
        });
        if (!sent) response.writeHead(200).end("{}");
      },
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}/x`;
    try {
      const outcome = await pinnedFetch(url, { fingerprint: a.fingerprint, reuse: true, timeoutMs: 3_000 }).then(
        (response) => response.certificate.fingerprint,
        (error: unknown) => (error as Error).message,
      );
      // No second handshake completed over the pinned connection (the server's callback never said it did).
      expect(renegotiation, `outcome: ${outcome}`).to.not.equal(null);
    } finally {
      await close(server);
    }
  });
});
