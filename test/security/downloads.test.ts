import https from "node:https";
import net from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { expect } from "chai";
import { JsonRpcProvider, Network } from "ethers";
import { freePort } from "../../src/chain/node";
import { pinnedFetch, sseSubscribe, type SseEvent } from "../../src/net/pinned-fetch";
import { verifyProtocol } from "../../src/verify";
import { encodePages, headOf } from "../../src/protocol/pages";
import { makeCertificate, makeHome, REGISTRIES, resealed, type TestCertificate } from "../server/fixtures";

/**
 * A hostile server: every way a protocol's URLs can try to hold an auditor (trickling bytes forever, a huge
 * Content-Length, endless bodies and events, never answering, never finishing TLS). Each must end within the
 * configured limits with a coded error.
 */

interface Hostile {
  url: string;
  close(): Promise<void>;
}

async function hostileServer(
  cert: TestCertificate,
  protocolBody: () => Buffer,
  protocolPages: () => Buffer[] = () => [],
  /** Paths served as another path's hostile behaviour (the issuer's content URLs, which alone the verifier fetches). */
  aliases: () => Map<string, string> = () => new Map(),
): Promise<Hostile> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const every = (ms: number, action: () => void): void => {
    const timer = setInterval(action, ms);
    timers.add(timer);
  };
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const path = aliases().get(req.url ?? "/") ?? req.url ?? "/";
    res.on("close", () => undefined);
    const page = /\/protocol\/pages\/(\d+)$/.exec(path);
    if (path.endsWith("/protocol")) {
      res.writeHead(200, { "content-type": "application/json" }).end(protocolBody());
    } else if (page && protocolPages()[Number(page[1])]) {
      res.writeHead(200, { "content-type": "application/jsonl" }).end(protocolPages()[Number(page[1])]);
    } else if (path.startsWith("/trickle")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.write("[");
      every(50, () => res.write(" "));
    } else if (path.startsWith("/huge-length")) {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(1e12) });
      res.write("[");
    } else if (path.startsWith("/endless")) {
      res.writeHead(200, { "content-type": "application/json" });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    } else if (path.startsWith("/silent")) {
      // headers never come
    } else if (path.startsWith("/sse-endless-line")) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: ");
      every(10, () => res.write("x".repeat(4096)));
    } else if (path.startsWith("/sse-error-trickle")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.write('{"error":');
      every(50, () => res.write(" "));
    } else if (path.startsWith("/sse-silent")) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.flushHeaders();
    } else if (path.startsWith("/sse-events")) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      let n = 0;
      every(5, () => res.write(`id: ${n}\nevent: state\ndata: {"seq":${n++}}\n\n`));
    } else {
      res.writeHead(404).end();
    }
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    async close() {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Accepts TCP connections and never says a word (no TLS handshake). */
async function mute(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<{ code?: string; message: string; ms: number }> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message, ms: Date.now() - started };
  }
  throw new Error("expected a failure");
}

describe("hostile downloads: the verifier's fetches end within their limits", function () {
  this.timeout(30_000);
  let cert: TestCertificate;
  let hostile: Hostile;
  let protocolBody: Buffer = Buffer.from("{}");
  let protocolPages: Buffer[] = [];
  let aliases = new Map<string, string>();

  before(async function () {
    cert = makeCertificate();
    hostile = await hostileServer(
      cert,
      () => protocolBody,
      () => protocolPages,
      () => aliases,
    );
  });
  after(async function () {
    await hostile?.close();
  });

  it("a body trickled forever ends at the deadline (whole exchange, not idle time)", async function () {
    const result = await failure(pinnedFetch(`${hostile.url}/trickle`, { timeoutMs: 700 }));
    expect(result.code).to.equal("FETCH_FAILED");
    expect(result.message).to.match(/timed out after 700 ms/);
    // Not before its deadline (an upper bound would fail on a busy machine: the message names the deadline that fired).
    expect(result.ms).to.be.at.least(650);
  });

  it("a huge Content-Length is refused before any body is read", async function () {
    const result = await failure(pinnedFetch(`${hostile.url}/huge-length`, { maxBytes: 1024 * 1024 }));
    expect(result.code).to.equal("FETCH_FAILED");
    expect(result.message).to.match(/too large \(1000000000000 bytes, limit 1048576\)/);
  });

  it("an endless body without Content-Length stops at maxBytes", async function () {
    const result = await failure(pinnedFetch(`${hostile.url}/endless`, { maxBytes: 256 * 1024, timeoutMs: 10_000 }));
    expect(result.code).to.equal("FETCH_FAILED");
    expect(result.message).to.match(/too large/);
  });

  it("a server that never answers, or never finishes TLS, ends at the deadline", async function () {
    const silent = await failure(pinnedFetch(`${hostile.url}/silent`, { timeoutMs: 500 }));
    expect(silent.code).to.equal("FETCH_FAILED");
    expect(silent.message).to.match(/timed out after 500 ms/);
    const server = await mute();
    try {
      const handshake = await failure(pinnedFetch(`${server.url}/x`, { timeoutMs: 500 }));
      expect(handshake.code).to.equal("FETCH_FAILED");
      expect(handshake.message).to.match(/timed out after 500 ms/);
    } finally {
      await server.close();
    }
  });

  it("a closed port is FETCH_FAILED at once", async function () {
    const port = await freePort();
    // A deadline far longer than the test's own: only the refusal can end it.
    const result = await failure(pinnedFetch(`https://127.0.0.1:${port}/x`, { timeoutMs: 600_000 }));
    expect(result.code).to.equal("FETCH_FAILED");
    expect(result.message).to.not.match(/timed out/);
  });

  describe("event streams", function () {
    function subscribe(path: string, options: { maxEventBytes?: number; idleTimeoutMs?: number; timeoutMs?: number }) {
      const errors: { code: string; fatal: boolean; message: string }[] = [];
      const events: SseEvent[] = [];
      const subscription = sseSubscribe(`${hostile.url}${path}`, {
        ...options,
        reconnectMs: false,
        onEvent: (event) => events.push(event),
        onError: (error, fatal) => errors.push({ code: error.code, fatal, message: error.message }),
      });
      return { subscription, errors, events };
    }

    async function until(check: () => boolean, ms: number): Promise<void> {
      const deadline = Date.now() + ms;
      while (!check()) {
        if (Date.now() > deadline) throw new Error("timed out");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }

    it("one endless event is cut at maxEventBytes", async function () {
      const { subscription, errors } = subscribe("/sse-endless-line", { maxEventBytes: 200_000 });
      await until(() => errors.length > 0, 5_000);
      expect(errors[0].code).to.equal("FETCH_FAILED");
      expect(errors[0].message).to.match(/larger than 200000 bytes/);
      expect(subscription.closed).to.equal(true);
    });

    it("a stream that goes silent is dropped after the idle time-out", async function () {
      const { errors } = subscribe("/sse-silent", { idleTimeoutMs: 400 });
      await until(() => errors.length > 0, 3_000);
      expect(errors[0].message).to.match(/no data .* for 400 ms/);
    });

    it("an error answer whose body trickles forever ends at the connect deadline", async function () {
      const { subscription, errors } = subscribe("/sse-error-trickle", { timeoutMs: 600 });
      await until(() => errors.length > 0, 4_000);
      expect(errors[0].code).to.equal("FETCH_FAILED");
      subscription.close();
    });

    it("a never-ending stream of events is delivered until the subscriber closes it", async function () {
      const { subscription, events, errors } = subscribe("/sse-events", {});
      await until(() => events.length >= 20, 5_000);
      subscription.close();
      const seen = events.length;
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(events.length).to.equal(seen);
      expect(errors).to.deep.equal([]);
    });
  });

  it("verifyProtocol on a protocol whose URLs trickle, never end or lie about their size finishes in bounded time", async function () {
    const fixture = makeHome(hostile.url, 4);
    try {
      const protocol = fixture.protocol(4);
      // The issuer's own content URLs (the only ones the verifier fetches), served hostile.
      const behaviours = ["/endless/0", "/silent/1", "/trickle/2", "/huge-length/3"];
      aliases = new Map([
        [new URL(protocol.model_data).pathname, "/trickle/model"],
        [new URL(protocol.instance_data).pathname, "/huge-length/input"],
        ...protocol.instance_protocol.map((entry, seq): [string, string] => [
          new URL(entry.state_data).pathname,
          behaviours[seq],
        ]),
      ]);
      // Served as version 3: the head (sealed over the hostile URLs) and its pages.
      const sealed = resealed(protocol);
      protocolBody = Buffer.from(JSON.stringify(headOf(sealed)));
      protocolPages = encodePages(sealed);
      // A chain that refuses connections: the chain steps fail fast; the point here is the web.
      const network = Network.from(31337);
      const provider = new JsonRpcProvider(`http://127.0.0.1:${await freePort()}`, network, { staticNetwork: network });
      const report = await verifyProtocol({
        input: { url: `${hostile.url}/instances/${protocol.instance_hash}/protocol` },
        provider,
        trusted: { chainId: 31337, registries: REGISTRIES, source: "test" },
        timeoutMs: 800,
        // V9 is not the point here: loading its interpreter through ts-node would block the event loop for seconds
        // while the head's 800 ms deadline runs (the CLI loads it bundled, in tens of milliseconds).
        conformance: false,
        maxBytes: { state: 256 * 1024 },
        logRetries: 0,
        retryBackoffMs: 1,
      });
      provider.destroy();
      // Bounded: every hostile fetch ended by its own limit (the messages below), within the test's timeout.
      expect(report.verdict).to.not.equal("valid");
      const v4 = report.steps.find((step) => step.id === "V4")!;
      expect(v4.problems.join(" ")).to.match(/timed out after 800 ms/);
      const v6 = report.steps.find((step) => step.id === "V6")!;
      const text = v6.problems.join(" ");
      expect(text).to.match(/too large/);
      expect(text).to.match(/timed out/);
    } finally {
      fixture.cleanup();
    }
  });
});
