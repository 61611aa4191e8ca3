import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { expect } from "chai";
import { startServer, type RunningServer } from "../../src/server";
import { makeCertificate, makeHome, type TestHome } from "../server/fixtures";

/**
 * Hostile clients of the HTTPS server: connections that never start or finish TLS, request heads the parser
 * refuses, subscribers beyond the limit and subscribers that never read. Each is cut or answered with a JSON error
 * within its limit, and the server keeps serving.
 */

/**
 * Milliseconds until the server closes `socket`. Node's own handshake time-out is 120 s; this server's is 400 ms. A
 * socket still open at half of Node's is held by Node's default, not the server's (no wall-clock budget: a slow
 * machine closes later, never earlier).
 */
function closedWithin(socket: net.Socket): Promise<number> {
  const NODE_DEFAULT_HALF_MS = 60_000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(`still open after ${NODE_DEFAULT_HALF_MS} ms: the server's handshake time-out did not close it`),
      );
    }, NODE_DEFAULT_HALF_MS);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

function rawTls(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    let received = "";
    const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => socket.write(text));
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("error", () => resolve(received));
    socket.on("close", () => resolve(received));
    setTimeout(() => socket.destroy(), 3_000);
  });
}

describe("hostile clients of the HTTPS server", function () {
  this.timeout(30_000);
  let fixture: TestHome;
  let server: RunningServer;

  before(async function () {
    const cert = makeCertificate();
    fixture = makeHome("https://127.0.0.1:1", 6);
    fixture.home.writeProtocol(fixture.protocol(6, "succeeded"));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      handshakeTimeoutMs: 400,
      events: { maxClients: 5, maxBufferedBytes: 64 * 1024, heartbeatMs: 60_000 },
      log: () => undefined,
    });
  });
  after(async function () {
    await server?.close();
    fixture?.cleanup();
  });

  it("a TCP connection that never starts TLS is closed at the handshake time-out (Node's default: 120 s)", async function () {
    expect(await closedWithin(net.connect(server.port, "127.0.0.1"))).to.be.at.least(300);
  });

  it("a TLS handshake that stops half-way is closed at the handshake time-out", async function () {
    const socket = net.connect(server.port, "127.0.0.1", () =>
      socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x80])),
    );
    expect(await closedWithin(socket)).to.be.at.least(300);
  });

  it("request heads the HTTP parser refuses get a JSON error and a closed connection", async function () {
    for (const [text, status] of [
      ["FROB / HTTP/1.1\r\nHost: x\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400],
      [`GET / HTTP/1.1\r\nHost: x\r\nX: ${"b".repeat(20_000)}\r\n\r\n`, 431],
    ] as const) {
      const answer = await rawTls(server.port, text);
      const [head, body] = answer.split("\r\n\r\n");
      expect(head.split("\r\n")[0]).to.equal(
        `HTTP/1.1 ${status} ${status === 400 ? "Bad Request" : "Request Header Fields Too Large"}`,
      );
      expect(head).to.match(/Content-Type: application\/json/);
      expect(JSON.parse(body).error.code).to.equal("INVALID_ARGUMENT");
    }
  });

  it("subscribers beyond the limit get 503 TOO_MANY_CLIENTS; a freed slot is reused", async function () {
    const url = `https://127.0.0.1:${server.port}/instances/${fixture.instanceHash}/events`;
    const agent = new https.Agent({ keepAlive: false, maxSockets: Infinity });
    const open = (): Promise<{ status: number; close(): void; body(): Promise<string> }> =>
      new Promise((resolve, reject) => {
        const req = https.get(url, { agent, rejectUnauthorized: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          const ended = new Promise<string>((done) => res.on("end", () => done(Buffer.concat(chunks).toString())));
          resolve({ status: res.statusCode ?? 0, close: () => res.destroy(), body: () => ended });
        });
        req.on("error", reject);
      });
    const streams = await Promise.all(Array.from({ length: 5 }, open));
    expect(streams.map((s) => s.status)).to.deep.equal([200, 200, 200, 200, 200]);
    const refused = await open();
    expect(refused.status).to.equal(503);
    expect(JSON.parse(await refused.body()).error.code).to.equal("TOO_MANY_CLIENTS");
    streams[0].close();
    const deadline = Date.now() + 3_000;
    while (server.app.events.clientCount > 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const again = await open();
    expect(again.status).to.equal(200);
    again.close();
    for (const stream of streams) stream.close();
  });

  it("a subscriber that never reads is held by backpressure, not buffered without bound; the server keeps serving", async function () {
    // A long protocol replayed to a client whose socket is paused: the hub stops at the socket's high-water mark.
    const long = makeHome("https://127.0.0.1:1", 400);
    try {
      const protocol = long.protocol(400);
      // The long instance lives in the server's data directory too.
      fixture.home.writeProtocol(protocol);
      const socket = tls.connect({ host: "127.0.0.1", port: server.port, rejectUnauthorized: false }, () => {
        socket.write(`GET /instances/${protocol.instance_hash}/events HTTP/1.1\r\nHost: x\r\n\r\n`);
        socket.pause(); // never read
      });
      socket.on("error", () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const buffered = (
        server.app.events as unknown as { channels: Map<string, { clients: Set<{ res: { writableLength: number } }> }> }
      ).channels;
      const lengths = [...buffered.values()].flatMap((channel) =>
        [...channel.clients].map((c) => c.res.writableLength),
      );
      expect(Math.max(0, ...lengths)).to.be.lessThan(256 * 1024);
      const ok = await new Promise<number>((resolve, reject) =>
        https
          .get(
            `https://127.0.0.1:${server.port}/instances/${fixture.instanceHash}/protocol`,
            { rejectUnauthorized: false },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          )
          .on("error", reject),
      );
      expect(ok).to.equal(200);
      socket.destroy();
    } finally {
      long.cleanup();
    }
  });
});
