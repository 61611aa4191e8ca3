import fs from "node:fs";
import https from "node:https";
import tls from "node:tls";
import { expect } from "chai";
import fc from "fast-check";
import { sha256Hex } from "../../src/chain/hash";
import { headOf } from "../../src/protocol/pages";
import { parseHead } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server";
import { makeCertificate, makeHome, type TestHome } from "../server/fixtures";
import { runs, watchUnhandledRejections, fuzzTimeout } from "./helpers";

/**
 * The HTTPS server on random requests: random methods, paths (traversal, encodings, malformed escapes, huge
 * names), headers and bodies. Every answer is a JSON error or the right bytes, never a 500 (the store is sound
 * here), never a crash; and the server keeps serving afterwards. Raw garbage over TLS too.
 */

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const HEX = "0123456789abcdef";

describe("fuzz: HTTPS server routes", function () {
  this.timeout(fuzzTimeout());
  watchUnhandledRejections();
  let fixture: TestHome;
  let server: RunningServer;
  let agent: https.Agent;
  const logged: string[] = [];

  before(async function () {
    const cert = makeCertificate();
    fixture = makeHome("https://127.0.0.1:1", 6);
    fixture.home.writeProtocol(fixture.protocol(4));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      events: { maxClients: 50, heartbeatMs: 60_000 },
      timeline: true, // the page and its routes, as `statetrail serve` mounts them (no chain: verification is 503)
      log: (message) => void logged.push(message),
    });
    agent = new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false });
  });
  after(async function () {
    agent?.destroy();
    await server?.close();
    fixture?.cleanup();
  });

  function request(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: "127.0.0.1", port: server.port, method, path, headers, agent, servername: "localhost" },
        (res) => {
          const status = res.statusCode ?? 0;
          if (String(res.headers["content-type"]).startsWith("text/event-stream")) {
            // An accepted subscription never ends: the headers are the answer.
            res.destroy();
            return resolve({ status, headers: res.headers, body: Buffer.alloc(0) });
          }
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  const hashArb = fc.oneof(
    fc.constantFrom(
      () => fixture.modelHash,
      () => fixture.instanceHash,
      () => fixture.states[0].hash,
      () => fixture.states[5].hash, // stored, not in the protocol
      () => sha256Hex("absent"),
    ),
    fc.string({ unit: fc.constantFrom(...HEX), minLength: 64, maxLength: 64 }).map((h) => () => h),
  );
  const segmentArb: fc.Arbitrary<() => string> = fc
    .oneof(
      hashArb,
      hashArb.map((h) => () => h().toUpperCase()),
      hashArb.map((h) => () => h().slice(0, 63)),
      hashArb.map((h) => () => `${h()}0`),
      fc.constantFrom("..", ".", "%2e%2e", "%2E%2E%2F", "..%2f..%2fetc%2fpasswd", "%00", "%", "%zz", "%c0%af", "~", ""),
      fc.constantFrom("models", "states", "instances", "protocol", "input", "events", ".well-known", "statetrail.json"),
      fc.string({ maxLength: 12 }).map((s) => () => encodeURIComponent(s)),
      fc.integer({ min: 100, max: 6000 }).map((n) => () => "a".repeat(n)),
    )
    .map((s) => (typeof s === "function" ? s : () => s));
  const randomPathArb = fc
    .tuple(
      fc.constantFrom("", "/models", "/states", "/instances", "/.well-known", "//", "/instances/"),
      fc.array(segmentArb, { maxLength: 4 }),
      fc.constantFrom("", "/", "?x=1", "?", "#f", "?a=%zz", ";x"),
    )
    .map(
      ([prefix, segments, suffix]) =>
        () =>
          `${prefix}/${segments.map((s) => s()).join("/")}${suffix}`,
    );
  const routeArb = fc
    .tuple(
      fc.constantFrom(
        "/models/",
        "/states/",
        "/instances/",
        "/instances",
        "/.well-known/statetrail.json",
        "/models",
        "/",
        "/assets/timeline.js",
        "/assets/",
      ),
      hashArb,
      fc.constantFrom(
        "/protocol",
        "/input",
        "/events",
        "/verification",
        "",
        "/protocol/",
        "/PROTOCOL",
        "/protocol/pages/0",
        "/protocol/pages/1",
        "/protocol/pages/00",
        "/protocol/pages/-1",
        "/protocol/pages/",
        "/protocol/pages/0/",
        "/protocol/pages/%30",
        "/protocol/pages/99999999999999999999",
        "/protocol/pages/..%2f..%2fjournal.jsonl",
      ),
    )
    .map(
      ([route, hash, tail]) =>
        () =>
          route === "/instances/" ? `${route}${hash()}${tail}` : route.endsWith("/") ? `${route}${hash()}` : route,
    );
  const pathArb = fc.oneof(routeArb, randomPathArb);
  const methodArb = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom("GET", "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS") },
    { weight: 1, arbitrary: fc.constantFrom("PATCH", "TRACE", "PROPFIND", "MKCOL", "SEARCH") },
    {
      weight: 1,
      arbitrary: fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"), minLength: 1, maxLength: 10 }),
    },
  );
  const headersArb = fc.record(
    {
      "last-event-id": fc.oneof(fc.constantFrom("0", "3", "-1", "999999999999999999", "abc", " 2 "), fc.string()),
      accept: fc.constantFrom("*/*", "text/event-stream", "application/json", "text/html"),
      range: fc.constantFrom("bytes=0-10", "bytes=-5", "bytes=a-b"),
      "if-none-match": fc.constantFrom("*", '"x"', 'W/"y"'),
      "x-fuzz": fc.string({ maxLength: 100 }),
      origin: fc.constantFrom("https://evil.example", "null"),
    },
    { requiredKeys: [] },
  );
  const bodyArb = fc.oneof(
    { weight: 4, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => ({ bytes: Buffer.from(b), chunked: false })) },
    { weight: 1, arbitrary: fc.constant({ bytes: Buffer.alloc(5000, 0x41), chunked: true }) },
  );

  /** What every answer must satisfy. */
  function checkAnswer(method: string, path: string, answer: Answer): void {
    const where = `${method} ${path.slice(0, 120)} → ${answer.status}`;
    expect(answer.status, where).to.not.equal(500);
    expect([200, 304, 400, 404, 405, 503], where).to.include(answer.status);
    expect(answer.headers["x-content-type-options"], where).to.equal("nosniff");
    if (method === "HEAD") {
      expect(answer.body.length, where).to.equal(0);
      return;
    }
    if (answer.status >= 400) {
      expect(String(answer.headers["content-type"]), where).to.match(/^application\/json/);
      const error = (JSON.parse(answer.body.toString("utf8")) as { error: { code: unknown; message: unknown } }).error;
      expect(error.code, where).to.be.a("string");
      expect(error.message, where).to.be.a("string");
      expect(String(error.message), where).to.not.include(fixture.home.root); // no file system paths
      return;
    }
    if (answer.status !== 200 || answer.body.length === 0) return;
    const match = /^\/(models|states)\/([0-9a-f]{64})(?:[?#].*)?$/.exec(path);
    // A model is its bytes; a state document's first line (its data) is what its hash addresses.
    const newline = answer.body.indexOf(0x0a);
    const addressed = match?.[1] === "states" && newline >= 0 ? answer.body.subarray(0, newline) : answer.body;
    if (match) expect(sha256Hex(addressed), where).to.equal(match[2]);
    const protocol = /^\/instances\/([0-9a-f]{64})\/protocol(?:[?#].*)?$/.exec(path);
    if (protocol) expect(parseHead(answer.body).instance_hash, where).to.equal(protocol[1]);
    const page = /^\/instances\/([0-9a-f]{64})\/protocol\/pages\/(\d+)(?:[?#].*)?$/.exec(path);
    if (page) {
      expect(answer.body.equals(fs.readFileSync(fixture.home.pageFile(page[1], Number(page[2])))), where).to.equal(
        true,
      );
    }
    if (/^\/instances\/[0-9a-f]{64}\/input(?:[?#].*)?$/.test(path)) {
      expect(answer.body.equals(fixture.input.document), where).to.equal(true); // never the raw input
    }
  }

  it("random methods, paths, headers and bodies: a JSON error or the right bytes", async function () {
    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(methodArb, pathArb, headersArb, bodyArb, async (method, makePath, headers, body) => {
        const path = makePath();
        const sent: Record<string, string> = { ...headers };
        if (body?.chunked) sent["transfer-encoding"] = "chunked";
        else if (body) sent["content-length"] = String(body.bytes.length);
        let answer: Answer;
        try {
          answer = await request(method, path, sent, body?.bytes);
        } catch (error) {
          // The client itself refuses some inputs (e.g. an invalid header character): not the server's answer.
          if ((error as NodeJS.ErrnoException).code === "ERR_INVALID_CHAR") return;
          if ((error as NodeJS.ErrnoException).code === "ERR_UNESCAPED_CHARACTERS") return;
          throw error;
        }
        const reason =
          answer.status >= 400 && method !== "HEAD"
            ? ` ${String(JSON.parse(answer.body.toString()).error.message).slice(0, 40)}`
            : "";
        statuses.set(`${answer.status}${reason}`, (statuses.get(`${answer.status}${reason}`) ?? 0) + 1);
        checkAnswer(method, path, answer);
      }),
      { numRuns: runs(400) },
    );
    if (process.env.STATETRAIL_FUZZ_VERBOSE) console.log("    statuses:", Object.fromEntries(statuses));
    expect(logged.filter((line) => /internal error/.test(line))).to.deep.equal([]);
  });

  it("raw bytes over TLS (malformed request lines, headers, smuggling attempts): no crash", async function () {
    const rawArb = fc.oneof(
      fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
      fc
        .constantFrom(
          "GET /models/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
          "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
          "GET /\x00 HTTP/1.1\r\n\r\n",
          "GET / HTTP/9.9\r\n\r\n",
          "POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n",
          `GET /${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
          `GET / HTTP/1.1\r\nHost: x\r\nX: ${"b".repeat(20_000)}\r\n\r\n`,
          "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /instances HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .map((text) => Buffer.from(text, "latin1")),
    );
    await fc.assert(
      fc.asyncProperty(rawArb, async (raw) => {
        const received = await new Promise<Buffer>((resolve) => {
          const chunks: Buffer[] = [];
          const socket = tls.connect({ host: "127.0.0.1", port: server.port, rejectUnauthorized: false }, () =>
            socket.end(raw),
          );
          const done = (): void => resolve(Buffer.concat(chunks));
          socket.on("data", (chunk: Buffer) => chunks.push(chunk));
          socket.on("error", done);
          socket.on("close", done);
          setTimeout(() => socket.destroy(), 300);
        });
        const statusLine = received.toString("latin1").split("\r\n")[0];
        if (statusLine) expect(statusLine, statusLine).to.not.match(/ 500 /);
      }),
      { numRuns: runs(60) },
    );
  });

  it("keeps serving afterwards, with no leaked subscribers", async function () {
    const answer = await request("GET", `/instances/${fixture.instanceHash}/protocol`, {});
    expect(answer.status).to.equal(200);
    expect(parseHead(answer.body)).to.deep.equal(headOf(fixture.protocol(4)));
    const deadline = Date.now() + 5_000;
    while (server.app.events.clientCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(server.app.events.clientCount).to.equal(0);
  });

  it("a corrupt store is the one 500, and only for the corrupt item", async function () {
    const corrupt = fixture.states[1].hash;
    fs.writeFileSync(fixture.home.stateFile(corrupt), "tampered");
    try {
      const bad = await request("GET", `/states/${corrupt}`, {});
      expect(bad.status).to.equal(500);
      expect(JSON.parse(bad.body.toString()).error.code).to.equal("INTERNAL");
      const good = await request("GET", `/states/${fixture.states[2].hash}`, {});
      expect(good.status).to.equal(200);
    } finally {
      fs.writeFileSync(fixture.home.stateFile(corrupt), fixture.states[1].bytes);
    }
  });
});
