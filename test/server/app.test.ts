import { expect } from "chai";
import fs from "node:fs";
import https from "node:https";
import { sha256Hex } from "../../src/chain/hash";
import { isStatetrailError } from "../../src/errors";
import { FetchError, PinnedAgent, pinnedFetch } from "../../src/net/pinned-fetch";
import { decodePage, headOf } from "../../src/protocol/pages";
import { wellKnownSchema, type InstanceSummary } from "../../src/server/app";
import { startServer, type RunningServer } from "../../src/server/https";
import {
  makeCertificate,
  makeHome,
  REGISTRIES,
  writeTestIdentity,
  type TestCertificate,
  type TestHome,
} from "./fixtures";

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A request with an unnormalised path (WHATWG URLs would resolve `..` and `%2e%2e` before sending). */
function raw(
  server: RunningServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: "127.0.0.1",
        port: server.port,
        method,
        path,
        headers,
        agent: new PinnedAgent({ fingerprint: server.fingerprint }),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    request.on("error", reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

function errorOf(response: RawResponse): { code: string; message: string } {
  expect(String(response.headers["content-type"])).to.match(/^application\/json/);
  return (JSON.parse(response.body.toString("utf8")) as { error: { code: string; message: string } }).error;
}

describe("server: HTTPS app", function () {
  this.timeout(20_000);
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  const logs: string[] = [];

  before(async () => {
    cert = makeCertificate();
    fixture = makeHome();
    fixture.home.writeProtocol(fixture.protocol(3));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      log: (message) => logs.push(message),
    });
  });

  after(async () => {
    await server?.close();
    fixture?.cleanup();
  });

  const get = (path: string) => pinnedFetch(`${server.url}${path}`, { fingerprint: cert.fingerprint });

  it("reports the real port and the served certificate's fingerprint", () => {
    expect(server.port).to.be.greaterThan(0);
    expect(server.url).to.equal(`https://127.0.0.1:${server.port}`);
    expect(server.fingerprint).to.equal(cert.fingerprint);
  });

  it("serves the exact model bytes, content-addressed and immutable", async () => {
    const response = await get(`/models/${fixture.modelHash}`);
    expect(response.status).to.equal(200);
    expect(response.body.equals(fixture.modelBytes)).to.equal(true);
    expect(sha256Hex(response.body)).to.equal(fixture.modelHash);
    expect(response.headers["content-type"]).to.match(/^application\/json/);
    expect(response.headers.etag).to.equal(`"${fixture.modelHash}"`);
    expect(response.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
    expect(response.headers["x-content-type-options"]).to.equal("nosniff");
    expect(response.headers["content-security-policy"]).to.match(/^default-src 'none'/);
    expect(response.headers["x-powered-by"]).to.equal(undefined);
    expect(response.certificate.fingerprint).to.equal(cert.fingerprint);
  });

  it("serves every state's whole document (open: every field), its data line hashing to the URL", async () => {
    for (const state of fixture.states) {
      const response = await get(`/states/${state.hash}`);
      expect(response.body.equals(state.bytes)).to.equal(true);
      expect(sha256Hex(response.body.subarray(0, response.body.indexOf(0x0a)))).to.equal(state.hash);
      expect(response.headers.etag).to.equal(`"${sha256Hex(state.bytes)}"`);
      expect(response.headers["content-type"]).to.equal("application/jsonl; charset=utf-8");
      expect(response.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
    }
  });

  it("answers a conditional request with 304 and a HEAD without a body", async () => {
    const conditional = await raw(server, "GET", `/models/${fixture.modelHash}`, {
      "if-none-match": `"${fixture.modelHash}"`,
    });
    expect(conditional.status).to.equal(304);
    expect(conditional.body.length).to.equal(0);
    const head = await raw(server, "HEAD", `/models/${fixture.modelHash}`);
    expect(head.status).to.equal(200);
    expect(head.body.length).to.equal(0);
    expect(Number(head.headers["content-length"])).to.equal(fixture.modelBytes.length);
  });

  it("serves the input document (open: disclosed), never the raw input file", async () => {
    const response = await get(`/instances/${fixture.instanceHash}/input`);
    expect(response.body.equals(fixture.input.document)).to.equal(true);
    expect(response.body.includes(fixture.inputBytes)).to.equal(false);
    expect(response.headers.etag).to.equal(`"${sha256Hex(fixture.input.document)}"`);
    expect(response.headers["cache-control"]).to.match(/immutable/);
  });

  it("serves the protocol's head as stored, revalidated on every use (no-cache, ETag = SHA-256 of the bytes)", async () => {
    const response = await get(`/instances/${fixture.instanceHash}/protocol`);
    const stored = fs.readFileSync(fixture.home.protocolFile(fixture.instanceHash));
    expect(response.body.equals(stored)).to.equal(true);
    expect(JSON.parse(response.body.toString("utf8"))).to.deep.equal(headOf(fixture.protocol(3)));
    expect(response.headers["cache-control"]).to.equal("no-cache");
    expect(response.headers.etag).to.equal(`"${sha256Hex(stored)}"`);
    expect(response.headers["content-security-policy"]).to.match(/^default-src 'none'/);
  });

  it("answers a conditional request for the head with 304 while it is unchanged, 200 once it changes", async () => {
    const path = `/instances/${fixture.instanceHash}/protocol`;
    const etag = String((await raw(server, "GET", path)).headers.etag);
    for (const header of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const unchanged = await raw(server, "GET", path, { "if-none-match": header });
      expect(unchanged.status, header).to.equal(304);
      expect(unchanged.body.length, header).to.equal(0);
      expect(unchanged.headers.etag, header).to.equal(etag);
      expect(unchanged.headers["cache-control"], header).to.equal("no-cache");
    }
    // A head with one more entry: the old ETag no longer matches (a man in the middle can't pin a stale head on a
    // revalidating client that way either: the ETag is the SHA-256 of what is served).
    const original = fs.readFileSync(fixture.home.protocolFile(fixture.instanceHash));
    fixture.home.writeProtocol(fixture.protocol(4));
    try {
      const changed = await raw(server, "GET", path, { "if-none-match": etag });
      expect(changed.status).to.equal(200);
      expect(changed.headers.etag).to.not.equal(etag);
      expect((JSON.parse(changed.body.toString("utf8")) as { entries: number }).entries).to.equal(4);
      expect(changed.headers.etag).to.equal(`"${sha256Hex(changed.body)}"`);
    } finally {
      fixture.home.writeProtocol(fixture.protocol(3));
      expect(fs.readFileSync(fixture.home.protocolFile(fixture.instanceHash)).equals(original)).to.equal(true);
    }
  });

  it("lists instances newest first", async () => {
    const older = sha256Hex("older instance");
    const newer = sha256Hex("newer instance");
    fixture.home.writeProtocol(fixture.otherProtocol(older, 1));
    fixture.home.writeProtocol(fixture.otherProtocol(newer, 500));
    try {
      const response = await get("/instances");
      expect(response.headers["cache-control"]).to.equal("no-store");
      const list = JSON.parse(response.body.toString("utf8")) as InstanceSummary[];
      expect(list.map((row) => row.instance_hash)).to.deep.equal([newer, fixture.instanceHash, older]);
      expect(list[1]).to.deep.include({
        instance_hash: fixture.instanceHash,
        model_hash: fixture.modelHash,
        status: "running",
        states: 3,
        head: { seq: 2, state_hash: fixture.states[2].hash },
      });
    } finally {
      fs.rmSync(fixture.home.instanceDir(older), { recursive: true });
      fs.rmSync(fixture.home.instanceDir(newer), { recursive: true });
    }
    const after = JSON.parse((await get("/instances")).body.toString("utf8")) as InstanceSummary[];
    expect(after.map((row) => row.instance_hash)).to.deep.equal([fixture.instanceHash]);
  });

  it("rejects malformed hashes with 400 before touching the store", async () => {
    const valid = fixture.modelHash;
    const bad = [
      `/models/${valid.slice(1)}`,
      `/models/${valid}0`,
      `/models/${valid.toUpperCase()}`,
      `/models/0x${valid}`,
      `/models/../identity.json`,
      `/models/..%2fidentity.json`,
      `/models/%2e%2e`,
      `/models/%2e%2e/%2e%2e/identity.json`,
      `/states/../../etc/passwd`,
      `/states/${valid}.json`,
      `/states/%zz`,
      `/instances/../identity.json`,
      `/instances/%2e%2e/protocol`,
      `/instances/${fixture.instanceHash.toUpperCase()}/protocol`,
      `/instances/${fixture.instanceHash.slice(2)}/input`,
      `/instances/x/events`,
    ];
    for (const path of bad) {
      const response = await raw(server, "GET", path);
      expect(response.status, path).to.equal(400);
      expect(errorOf(response).code, path).to.equal("INVALID_ARGUMENT");
      expect(response.body.toString("utf8"), path).not.to.contain("statetrail_identity");
    }
  });

  it("answers 404 in JSON for unknown hashes and routes", async () => {
    const unknown = sha256Hex("nothing here");
    for (const path of [
      `/models/${unknown}`,
      `/states/${unknown}`,
      `/instances/${unknown}/input`,
      `/instances/${unknown}/protocol`,
      `/instances/${unknown}/events`,
      `/instances/${fixture.instanceHash}/journal`,
      `/identity.json`,
      `/`,
    ]) {
      const response = await raw(server, "GET", path);
      expect(response.status, path).to.equal(404);
      expect(errorOf(response).code, path).to.equal("NOT_FOUND");
      expect(response.headers["x-content-type-options"]).to.equal("nosniff");
    }
  });

  it("is read-only: other methods get 405 and request bodies are refused", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const response = await raw(server, method, `/models/${fixture.modelHash}`, { "content-type": "text/plain" }, "x");
      expect(response.status, method).to.equal(405);
      expect(response.headers.allow).to.equal("GET, HEAD");
      expect(errorOf(response).code).to.equal("METHOD_NOT_ALLOWED");
    }
    const framings: Record<string, string>[] = [{ "content-length": "2" }, { "transfer-encoding": "chunked" }];
    for (const framing of framings) {
      const withBody = await raw(server, "GET", `/models/${fixture.modelHash}`, framing, "hi");
      expect(withBody.status).to.equal(400);
      expect(errorOf(withBody).message).to.match(/bodies/);
    }
  });

  it("refuses to serve bytes that don't match their hash (corrupt store → 500)", async () => {
    const state = fixture.states[0];
    const file = fixture.home.stateFile(state.hash);
    // The data line changed (what the hash addresses); a byte more after it is not the data's.
    fs.writeFileSync(file, Buffer.concat([Buffer.from(" "), state.bytes]));
    try {
      const response = await raw(server, "GET", `/states/${state.hash}`);
      expect(response.status).to.equal(500);
      expect(errorOf(response).code).to.equal("INTERNAL");
      expect(response.body.includes(state.dataBytes)).to.equal(false);
      expect(response.body.includes(state.disclosures[0].salt)).to.equal(false);
      expect(logs.some((line) => line.includes(state.hash))).to.equal(true);
    } finally {
      fs.writeFileSync(file, state.bytes);
    }
  });

  it("refuses a corrupt or misfiled protocol with 500", async () => {
    const file = fixture.home.protocolFile(fixture.instanceHash);
    const original = fs.readFileSync(file);
    try {
      fs.writeFileSync(file, "{ not json");
      const broken = await raw(server, "GET", `/instances/${fixture.instanceHash}/protocol`);
      expect(broken.status).to.equal(500);
      expect(errorOf(broken).code).to.equal("INTERNAL");
      const misfiled = { ...headOf(fixture.protocol(3)), instance_hash: sha256Hex("another") };
      fs.writeFileSync(file, JSON.stringify(misfiled));
      const wrong = await raw(server, "GET", `/instances/${fixture.instanceHash}/protocol`);
      expect(wrong.status).to.equal(500);
      expect(errorOf(wrong).message).to.match(/is for instance/);
    } finally {
      fs.writeFileSync(file, original);
    }
  });

  it("without a well-known source, /.well-known answers 404", async () => {
    const response = await raw(server, "GET", "/.well-known/statetrail.json");
    expect(response.status).to.equal(404);
  });

  it("by default serves the certificate named in identity.json and a well-known document built from it", async () => {
    const other = makeHome();
    const identity = writeTestIdentity(other.home, cert, 1);
    const second = await startServer({ home: other.home, port: 0, wellKnown: { registries: REGISTRIES } });
    try {
      expect(second.host).to.equal(identity.host);
      expect(second.fingerprint).to.equal(cert.fingerprint);
      const response = await pinnedFetch(`${second.url}/.well-known/statetrail.json`, {
        fingerprint: identity.certificate_fingerprint,
      });
      const document = wellKnownSchema.parse(JSON.parse(response.body.toString("utf8")));
      expect(document).to.deep.equal({
        statetrail: 1,
        issuer: identity.address,
        chain_id: 31337,
        registries: REGISTRIES,
        ens_name: identity.ens_name,
        certificate_fingerprint: cert.fingerprint,
        url: identity.url,
      });
      expect(response.headers["content-security-policy"]).to.match(/^default-src 'none'/);
    } finally {
      await second.close();
      other.cleanup();
    }
  });

  it("fails clearly without a certificate or identity, and on a busy port", async () => {
    const empty = makeHome();
    try {
      const missing = await startServer({ home: empty.home, port: 0 }).catch((error: unknown) => error);
      expect(isStatetrailError(missing, "IDENTITY_MISSING")).to.equal(true);
      const busy = await startServer({
        home: empty.home,
        host: "127.0.0.1",
        port: server.port,
        certPem: cert.certPem,
        keyPem: cert.keyPem,
      }).catch((error: unknown) => error);
      expect(isStatetrailError(busy, "INVALID_ARGUMENT")).to.equal(true);
      expect((busy as Error).message).to.match(/EADDRINUSE/);
    } finally {
      empty.cleanup();
    }
  });

  it("pinnedFetch turns server errors into FETCH_FAILED with the server's message", async () => {
    const unknown = sha256Hex("missing model");
    const error = await get(`/models/${unknown}`).catch((caught: unknown) => caught);
    expect(error).to.be.instanceOf(FetchError);
    const fetchError = error as FetchError;
    expect(fetchError.code).to.equal("FETCH_FAILED");
    expect(fetchError.status).to.equal(404);
    expect(fetchError.serverCode).to.equal("NOT_FOUND");
    expect(fetchError.message).to.contain(`model ${unknown} is not published here`);
  });
});

describe("server: protocol pages", function () {
  this.timeout(20_000);
  const PAGE_SIZE = 2;
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  let instance: string;

  before(async () => {
    cert = makeCertificate();
    fixture = makeHome("https://127.0.0.1:8443", 8);
    instance = fixture.instanceHash;
    // 5 entries in pages of 2: pages 0 and 1 are full (closed), page 2 holds one entry (open).
    fixture.home.writeProtocol(fixture.protocol(5, "running", PAGE_SIZE));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      log: () => undefined,
    });
  });

  after(async () => {
    await server?.close();
    fixture?.cleanup();
  });

  const page = (index: number | string, headers: Record<string, string> = {}) =>
    raw(server, "GET", `/instances/${instance}/protocol/pages/${index}`, headers);

  it("serves every page as stored, and the pages decode against the head's accumulator", async () => {
    const protocol = fixture.protocol(5, "running", PAGE_SIZE);
    let accumulator = instance;
    const entries = [];
    for (let index = 0; index < 3; index += 1) {
      const response = await page(index);
      expect(response.status).to.equal(200);
      expect(response.body.equals(fs.readFileSync(fixture.home.pageFile(instance, index)))).to.equal(true);
      expect(response.headers["x-content-type-options"]).to.equal("nosniff");
      expect(response.headers["content-security-policy"]).to.match(/^default-src 'none'/);
      const decoded = decodePage(response.body, {
        instanceHash: instance,
        index,
        accumulatorBefore: accumulator,
        wanted: PAGE_SIZE,
      });
      entries.push(...decoded.entries);
      accumulator = decoded.accumulatorAfter;
    }
    expect(entries).to.deep.equal(protocol.instance_protocol);
    expect(accumulator).to.equal(protocol.accumulator);
  });

  it("a full page is closed: immutable, with a strong ETag (its SHA-256), and 304 on If-None-Match", async () => {
    for (const index of [0, 1]) {
      const response = await page(index);
      expect(response.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
      expect(response.headers.etag).to.equal(`"${sha256Hex(response.body)}"`);
      const again = await page(index, { "if-none-match": String(response.headers.etag) });
      expect(again.status).to.equal(304);
      expect(again.body.length).to.equal(0);
      expect(again.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
      // Another page's ETag doesn't match: a page swapped in by a cache can't be revalidated as this one.
      const other = await page(index, { "if-none-match": `"${sha256Hex(`page ${1 - index}`)}"` });
      expect(other.status).to.equal(200);
    }
  });

  it("the open page is revalidated (no-cache) and serves whole lines only while an append is under way", async () => {
    const file = fixture.home.pageFile(instance, 2);
    const before = fs.readFileSync(file);
    const open = await page(2);
    expect(open.status).to.equal(200);
    expect(open.headers["cache-control"]).to.equal("no-cache");
    expect(open.headers.etag).to.equal(`"${sha256Hex(before)}"`);
    try {
      // Half of the next entry's line, as a reader racing the tracker's append may find it.
      const next = Buffer.from(JSON.stringify(fixture.protocol(6, "running", PAGE_SIZE).instance_protocol[5]));
      fs.appendFileSync(file, next.subarray(0, 40));
      const racing = await page(2, { "if-none-match": String(open.headers.etag) });
      expect(racing.status).to.equal(304); // the same whole lines: the same ETag
      const whole = await page(2);
      expect(whole.body.equals(before)).to.equal(true);
      expect(whole.body[whole.body.length - 1]).to.equal(0x0a);
      // The line completed, the page is full, but the signed head does not count it yet: still revalidated (a line
      // appended ahead of the head is not durable until the head that counts it is written).
      fs.appendFileSync(file, Buffer.concat([next.subarray(40), Buffer.from("\n")]));
      const full = await page(2);
      expect(full.body.length).to.equal(before.length + next.length + 1);
      expect(full.headers["cache-control"]).to.equal("no-cache");
      expect(full.headers.etag).to.not.equal(open.headers.etag);
      // Once a head counts all its entries, it is closed.
      fixture.home.writeHead(headOf(fixture.protocol(6, "running", PAGE_SIZE)));
      const closed = await page(2);
      expect(closed.body.equals(full.body)).to.equal(true);
      expect(closed.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
    } finally {
      fs.writeFileSync(file, before);
      fixture.home.writeHead(headOf(fixture.protocol(5, "running", PAGE_SIZE)));
    }
  });

  it("answers 404 with a coded error for a page that does not exist, or of an unknown instance", async () => {
    for (const path of [
      `/instances/${instance}/protocol/pages/3`,
      `/instances/${instance}/protocol/pages/999999999`,
      `/instances/${sha256Hex("unknown")}/protocol/pages/0`,
    ]) {
      const response = await raw(server, "GET", path);
      expect(response.status, path).to.equal(404);
      expect(errorOf(response).code, path).to.equal("NOT_FOUND");
      expect(response.headers["cache-control"], path).to.equal("no-store");
    }
  });

  it("answers 400 for a malformed page index (leading zeros, signs, huge, not decimal) before touching the store", async () => {
    for (const index of [
      "00",
      "01",
      "-1",
      "+1",
      "1e3",
      "0x1",
      "1.0",
      "9999999999",
      "99999999999999999999",
      "%201",
      "a",
    ]) {
      const response = await page(index);
      expect(response.status, index).to.equal(400);
      expect(errorOf(response).code, index).to.equal("INVALID_ARGUMENT");
    }
    const badHash = await raw(server, "GET", `/instances/${instance.toUpperCase()}/protocol/pages/0`);
    expect(badHash.status).to.equal(400);
  });

  it("never serves a page's file from outside the instance's pages (traversal in the index)", async () => {
    for (const path of [
      `/instances/${instance}/protocol/pages/..%2f..%2fjournal.jsonl`,
      `/instances/${instance}/protocol/pages/%2e%2e`,
    ]) {
      const response = await raw(server, "GET", path);
      expect(response.status, path).to.equal(400);
    }
  });
});
