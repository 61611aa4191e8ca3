import { expect } from "chai";
import { Wallet, type HDNodeWallet } from "ethers";
import fs from "node:fs";
import https from "node:https";
import { sha256Hex, type HexHash } from "../../src/chain/hash";
import { buildSignInMessage } from "../../src/identity/siwe";
import { PinnedAgent } from "../../src/net/pinned-fetch";
import { startServer, type RunningServer } from "../../src/server/https";
import { accessFile, emptyPolicy, writePolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import { accessKeysFile, readAccessKeys } from "../../src/store/access-keys";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "./fixtures";

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function request(
  server: RunningServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: server.port,
        method,
        path,
        headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
        agent: new PinnedAgent({ fingerprint: server.fingerprint }),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
        );
        response.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** The body as the only thing it may be: `{"error": {code, message, hint}}` and nothing else. */
function onlyError(response: RawResponse, code: string): { code: string; message: string; hint: string } {
  expect(String(response.headers["content-type"])).to.match(/^application\/json/);
  const parsed = JSON.parse(response.body.toString("utf8")) as Record<string, unknown>;
  expect(Object.keys(parsed)).to.deep.equal(["error"]);
  const error = parsed.error as { code: string; message: string; hint: string };
  expect(Object.keys(error).sort()).to.deep.equal(["code", "hint", "message"]);
  expect(error.code).to.equal(code);
  expect(response.headers["cache-control"]).to.equal("no-store");
  return error;
}

const ZERO_GRANT = { name: null, granted_at: "2026-01-01T00:00:00.000Z", until: null } as const;

describe("server: access control (ACCESS.md)", function () {
  this.timeout(30_000);
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  let other: HexHash;
  let otherModel: { bytes: Buffer; hash: HexHash };
  const alice = Wallet.createRandom();
  const bob = Wallet.createRandom();
  const logs: string[] = [];
  let grantSeq = 0;

  const policy = (edit: (p: AccessPolicy) => void = () => undefined): AccessPolicy => {
    const p = emptyPolicy("private");
    edit(p);
    writePolicy(fixture.home, p);
    return p;
  };
  const grant = (grantee: string, scope: Grant["scope"], extra: Partial<Grant> = {}): Grant => ({
    id: `g-${(grantSeq++).toString(16).padStart(8, "0")}`,
    scope,
    grantee,
    ...ZERO_GRANT,
    ...extra,
  });

  before(async () => {
    cert = makeCertificate();
    fixture = makeHome();
    fixture.home.writeProtocol(fixture.protocol(3));
    other = sha256Hex("another instance");
    fixture.home.writeProtocol(fixture.otherProtocol(other, 20));
    otherModel = { bytes: Buffer.from('{"StartAt":"X","States":{"X":{"Type":"Succeed"}}}') } as typeof otherModel;
    otherModel.hash = sha256Hex(otherModel.bytes);
    fixture.home.writeModel(otherModel.hash, otherModel.bytes);
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      timeline: true,
      access: { chainId: 31337, recheckMs: 50 },
      log: (message) => logs.push(message),
    });
  });

  after(async () => {
    await server?.close();
    fixture?.cleanup();
  });

  afterEach(() => fs.rmSync(accessFile(fixture.home), { force: true }));

  const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
    request(server, "GET", path, token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers });

  interface MessageOptions {
    domain?: string;
    uri?: string;
    chainId?: number;
    issuedAt?: Date;
    expirationTime?: Date;
    nonce?: string;
  }

  const nonce = async (): Promise<string> => {
    const response = await get("/auth/nonce");
    expect(response.status).to.equal(200);
    expect(response.headers["cache-control"]).to.equal("no-store");
    const body = JSON.parse(response.body.toString("utf8")) as { nonce: string; expires: string };
    expect(body.nonce).to.match(/^[0-9a-zA-Z]{16,}$/);
    expect(Date.parse(body.expires)).to.be.greaterThan(Date.now());
    return body.nonce;
  };

  const signedMessage = async (wallet: Wallet | HDNodeWallet, options: MessageOptions = {}) => {
    const now = new Date();
    const message = buildSignInMessage({
      domain: options.domain ?? new URL(server.url).host,
      address: wallet.address,
      uri: options.uri ?? server.url,
      chainId: options.chainId ?? 31337,
      nonce: options.nonce ?? (await nonce()),
      issuedAt: options.issuedAt ?? now,
      expirationTime: options.expirationTime ?? new Date(now.getTime() + 10 * 60_000),
    });
    return { message, signature: await wallet.signMessage(message) };
  };

  const postSignIn = (body: unknown) => request(server, "POST", "/auth/siwe", {}, JSON.stringify(body));

  const signIn = async (wallet: Wallet | HDNodeWallet): Promise<string> => {
    const response = await postSignIn(await signedMessage(wallet));
    expect(response.status, response.body.toString()).to.equal(200);
    const body = JSON.parse(response.body.toString("utf8")) as { token: string; address: string; expires: string };
    expect(body.address).to.equal(wallet.address);
    expect(Buffer.from(body.token, "base64url").length).to.equal(32);
    const cookie = String(response.headers["set-cookie"]);
    expect(cookie).to.include(`statetrail_session=${body.token}`);
    expect(cookie)
      .to.match(/HttpOnly/)
      .and.match(/Secure/)
      .and.match(/SameSite=Strict/)
      .and.match(/Path=\//);
    return body.token;
  };

  const dataRoutes = (instance: HexHash): string[] => [
    `/instances/${instance}/protocol`,
    `/instances/${instance}/protocol/pages/0`,
    `/instances/${instance}/input`,
    `/instances/${instance}/events`,
    `/instances/${instance}/timeline`,
    `/instances/${instance}/verification`,
  ];

  it("without access.json serves everything openly, as before", async () => {
    const model = await get(`/models/${fixture.modelHash}`);
    expect(model.status).to.equal(200);
    expect(model.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
    const list = JSON.parse((await get("/instances")).body.toString()) as unknown[];
    expect(list).to.have.length(2);
  });

  it("mode private: every data route answers an anonymous caller 401 AUTH_REQUIRED with no data", async () => {
    policy();
    const unknown = sha256Hex("no such instance");
    const routes = [
      ...dataRoutes(fixture.instanceHash),
      ...dataRoutes(unknown),
      `/models/${fixture.modelHash}`,
      `/models/${otherModel.hash}`,
      `/states/${fixture.states[0].hash}`,
      `/states/${sha256Hex("no such state")}`,
    ];
    const bodies = new Set<string>();
    for (const path of routes) {
      for (const method of ["GET", "HEAD"]) {
        const response = await request(server, method, path);
        expect(response.status, `${method} ${path}`).to.equal(401);
        expect(response.headers["www-authenticate"]).to.equal(`SIWE realm="${server.url}", nonce_uri="/auth/nonce"`);
        if (method === "HEAD") continue;
        onlyError(response, "AUTH_REQUIRED");
        bodies.add(response.body.toString("utf8"));
      }
    }
    // Percent-encoded names reach the same routes (express decodes parameters): refused alike.
    const encode = (hash: string) => [...hash].map((c) => `%${c.charCodeAt(0).toString(16)}`).join("");
    for (const path of [
      `/models/${encode(fixture.modelHash)}`,
      `/states/${encode(fixture.states[0].hash)}`,
      `/instances/${encode(fixture.instanceHash)}/input`,
      `/instances/${encode(fixture.instanceHash)}/protocol`,
      `/instances/${fixture.instanceHash}/protocol/pages/%30`,
    ]) {
      const response = await request(server, "GET", path);
      expect(response.status, path).to.equal(401);
      onlyError(response, "AUTH_REQUIRED");
      bodies.add(response.body.toString("utf8"));
    }
    // The same body whether the thing exists or not: nothing learned beyond the chain.
    expect(bodies.size).to.equal(1);
    for (const needle of [fixture.modelHash, fixture.instanceHash, '"order"']) {
      expect([...bodies][0]).to.not.include(needle);
    }
    // What needs no sign-in still answers.
    expect((await get("/")).status).to.equal(200);
    expect((await get("/assets/timeline.js")).status).to.equal(200);
    expect((await get("/auth/nonce")).status).to.equal(200);
  });

  it("mode private: no spelling of a data path gets data to an anonymous caller", async () => {
    policy();
    const secrets = ["StartAt", '"order"', "instance_hash", "state_hash", "model_hash", "accumulator"];
    const pct = (text: string, every: number) =>
      [...text].map((c, i) => (i % every === 0 ? `%${c.charCodeAt(0).toString(16).toUpperCase()}` : c)).join("");
    const bases = [
      ...dataRoutes(fixture.instanceHash),
      `/models/${fixture.modelHash}`,
      `/states/${fixture.states[0].hash}`,
      "/instances",
      "/models",
    ];
    const spellings = (base: string): string[] => [
      base,
      `${base}/`,
      `${base}?after=-1`,
      `${base}#x`,
      `/${base}`,
      base.replace(/^\//, "/./"),
      `/x/..${base}`,
      base.replace(/\/([^/]+)$/, "/%2F$1"),
      base.replace(/\//g, "%2F"),
      pct(base, 3),
      pct(base, 1),
      base.toUpperCase(),
      // express routes paths case-insensitively: the collection's name in other cases, the hash as it is
      base.replace(/^\/([a-z]+)/, (name) => name.toUpperCase()),
      base.replace(/^\/([a-z])/, (name) => name.toUpperCase()),
      base.replace(/\/(protocol|pages|events|input|timeline|report)/g, (name) => name.toUpperCase()),
      `${base};x`,
      `${base}%00`,
    ];
    for (const base of bases) {
      for (const path of spellings(base)) {
        const response = await request(server, "GET", path);
        const body = response.body.toString("utf8");
        for (const secret of secrets) expect(body, `${path} (${response.status})`).to.not.include(secret);
        if (response.status === 200) expect(body, path).to.equal("[]"); // an empty list at most
      }
    }
  });

  it("an anonymous caller's lists hold only public instances and their models", async () => {
    policy();
    expect(JSON.parse((await get("/instances")).body.toString())).to.deep.equal([]);
    expect(JSON.parse((await get("/models")).body.toString())).to.deep.equal([]);
    const list = await get("/instances");
    expect(list.headers["cache-control"]).to.equal("private, no-store");
    expect(String(list.headers.vary)).to.match(/Authorization/);
    policy((p) => p.public.push(other));
    const rows = JSON.parse((await get("/instances")).body.toString()) as { instance_hash: string }[];
    expect(rows.map((row) => row.instance_hash)).to.deep.equal([other]);
    const models = JSON.parse((await get("/models")).body.toString()) as { model_hash: string }[];
    expect(models.map((row) => row.model_hash)).to.deep.equal([fixture.modelHash]);
  });

  it("a public instance is readable anonymously, cached as before, while the others answer 401", async () => {
    policy((p) => p.public.push(fixture.instanceHash));
    const head = await get(`/instances/${fixture.instanceHash}/protocol`);
    expect(head.status).to.equal(200);
    expect(head.headers["cache-control"]).to.equal("no-cache");
    expect(head.headers.etag).to.match(/^"[0-9a-f]{64}"$/);
    const input = await get(`/instances/${fixture.instanceHash}/input`);
    expect(input.body.equals(fixture.input.document)).to.equal(true);
    const state = await get(`/states/${fixture.states[1].hash}`);
    expect(state.body.equals(fixture.states[1].bytes)).to.equal(true);
    const model = await get(`/models/${fixture.modelHash}`);
    expect(model.status).to.equal(200);
    expect(model.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
    expect((await get(`/instances/${other}/protocol`)).status).to.equal(401);
    expect((await get(`/models/${otherModel.hash}`)).status).to.equal(401);
  });

  it("a session without a grant is 403 GRANT_MISSING with no data; an instance grant opens that instance only", async () => {
    const token = await signIn(alice);
    policy();
    for (const path of [...dataRoutes(fixture.instanceHash), `/models/${fixture.modelHash}`]) {
      const response = await get(path, token);
      expect(response.status, path).to.equal(403);
      onlyError(response, "GRANT_MISSING");
    }
    policy((p) => p.grants.push(grant(alice.address, `instance:${fixture.instanceHash}`)));
    const head = await get(`/instances/${fixture.instanceHash}/protocol`, token);
    expect(head.status).to.equal(200);
    expect(head.headers["cache-control"]).to.equal("private, no-store");
    expect(String(head.headers.vary)).to.match(/Authorization/);
    expect(head.headers["cross-origin-resource-policy"]).to.equal("same-origin");
    const page = await get(`/instances/${fixture.instanceHash}/protocol/pages/0`, token);
    expect(page.status).to.equal(200);
    const model = await get(`/models/${fixture.modelHash}`, token);
    expect(model.status).to.equal(200);
    expect(model.body.equals(fixture.modelBytes)).to.equal(true);
    expect(model.headers["cache-control"]).to.equal("private, no-store");
    const state = await get(`/states/${fixture.states[0].hash}`, token);
    expect(state.body.equals(fixture.states[0].bytes)).to.equal(true);
    // Another instance, another model, a state not stored: refused alike.
    for (const path of [...dataRoutes(other), `/models/${otherModel.hash}`, `/states/${sha256Hex("no such state")}`]) {
      const response = await get(path, token);
      expect(response.status, path).to.equal(403);
      onlyError(response, "GRANT_MISSING");
    }
    const rows = JSON.parse((await get("/instances", token)).body.toString()) as { instance_hash: string }[];
    expect(rows.map((row) => row.instance_hash)).to.deep.equal([fixture.instanceHash]);
    // Bob's session reads nothing of Alice's grant.
    const bobs = await signIn(bob);
    expect((await get(`/instances/${fixture.instanceHash}/protocol`, bobs)).status).to.equal(403);
    expect(JSON.parse((await get("/instances", bobs)).body.toString())).to.deep.equal([]);
  });

  it("a grantee's sign-in records its public key (access-keys.json, 0600) for encrypted mirrors; others' do not", async () => {
    fs.rmSync(accessKeysFile(fixture.home), { force: true });
    policy((p) => p.grants.push(grant(alice.address, `instance:${fixture.instanceHash}`)));
    await signIn(alice);
    await signIn(bob); // no grant: not recorded (anyone may sign in)
    const file = accessKeysFile(fixture.home);
    for (let wait = 0; wait < 50 && !fs.existsSync(file); wait += 1) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    const keys = readAccessKeys(fixture.home).keys;
    expect(Object.keys(keys)).to.deep.equal([alice.address]);
    expect(keys[alice.address]).to.include({ public_key: alice.signingKey.publicKey, source: "sign-in" });
    expect((fs.statSync(file).mode & 0o777).toString(8)).to.equal("600");
    const first = keys[alice.address].first_seen;
    await signIn(alice);
    await new Promise((r) => setTimeout(r, 100));
    expect(readAccessKeys(fixture.home).keys[alice.address].first_seen).to.equal(first);
    fs.rmSync(file, { force: true });
  });

  it("model and all grants cover what they name; an expired grant covers nothing", async () => {
    const token = await signIn(alice);
    policy((p) => p.grants.push(grant(alice.address, `model:${fixture.modelHash}`)));
    expect((await get(`/instances/${fixture.instanceHash}/input`, token)).status).to.equal(200);
    expect((await get(`/instances/${other}/protocol`, token)).status).to.equal(200);
    expect((await get(`/models/${otherModel.hash}`, token)).status).to.equal(403);
    policy((p) => p.grants.push(grant(alice.address.toLowerCase(), "all")));
    expect((await get(`/models/${otherModel.hash}`, token)).status).to.equal(200);
    const unknown = await get(`/instances/${sha256Hex("none")}/protocol`, token);
    expect(unknown.status).to.equal(404);
    policy((p) => p.grants.push(grant(alice.address, "all", { until: "2020-01-01T00:00:00.000Z" })));
    expect((await get(`/instances/${other}/protocol`, token)).status).to.equal(403);
  });

  it("a revoke stops the next request of the same session, and an open event stream", async () => {
    const token = await signIn(alice);
    policy((p) => p.grants.push(grant(alice.address, "all")));
    expect((await get(`/instances/${fixture.instanceHash}/protocol`, token)).status).to.equal(200);
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const ended = new Promise<{ status: number; type: string }>((resolve, reject) => {
      const req = https.request(
        {
          host: "127.0.0.1",
          port: server.port,
          path: `/instances/${fixture.instanceHash}/events`,
          headers: { authorization: `Bearer ${token}` },
          agent: new PinnedAgent({ fingerprint: server.fingerprint }),
        },
        (response) => {
          opened();
          response.resume();
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, type: String(response.headers["content-type"]) }),
          );
        },
      );
      req.on("error", reject);
      req.end();
    });
    // Revoked while the stream is open (the grant removed from the file: a new inode).
    await open;
    policy();
    const stream = await ended;
    expect(stream.status).to.equal(200);
    expect(stream.type).to.match(/^text\/event-stream/);
    const after = await get(`/instances/${fixture.instanceHash}/protocol`, token);
    expect(after.status).to.equal(403);
    onlyError(after, "GRANT_MISSING");
  });

  it("the session cookie is accepted like the header", async () => {
    const token = await signIn(alice);
    policy((p) => p.grants.push(grant(alice.address, "all")));
    const response = await get(`/instances/${fixture.instanceHash}/protocol`, undefined, {
      cookie: `other=1; statetrail_session=${token}`,
    });
    expect(response.status).to.equal(200);
    expect((await get(`/instances/${fixture.instanceHash}/protocol`, "not-a-session")).status).to.equal(401);
  });

  describe("sign-in refusals (401 AUTH_INVALID, no session)", () => {
    const refused = async (body: unknown, reason: RegExp): Promise<void> => {
      const response = await postSignIn(body);
      expect(response.status, response.body.toString()).to.equal(401);
      expect(response.headers["set-cookie"]).to.equal(undefined);
      expect(onlyError(response, "AUTH_INVALID").message).to.match(reason);
    };

    it("a replayed sign-in (the same message and signature twice)", async () => {
      const signed = await signedMessage(alice);
      expect((await postSignIn(signed)).status).to.equal(200);
      await refused(signed, /nonce/);
    });

    it("a message for another domain or origin (cross-origin)", async () => {
      await refused(await signedMessage(alice, { domain: "evil.example" }), /another site/);
      await refused(await signedMessage(alice, { uri: "https://evil.example/login" }), /another origin/);
      const port = new URL(server.url).port;
      await refused(await signedMessage(alice, { domain: `localhost:${port}` }), /another site/);
    });

    it("another chain", async () => {
      await refused(await signedMessage(alice, { chainId: 1 }), /chain ID 1 /);
    });

    it("an expired message, one that asks for more than an hour, one issued long ago", async () => {
      const now = Date.now();
      await refused(
        await signedMessage(alice, { issuedAt: new Date(now - 4 * 60_000), expirationTime: new Date(now - 1000) }),
        /expired/,
      );
      await refused(await signedMessage(alice, { expirationTime: new Date(now + 2 * 3_600_000) }), /1 hour/);
      await refused(
        await signedMessage(alice, { issuedAt: new Date(now - 20 * 60_000), expirationTime: new Date(now + 60_000) }),
        /5 minutes/,
      );
    });

    it("a signature by another key, or not a signature", async () => {
      const signed = await signedMessage(alice);
      await refused({ message: signed.message, signature: await bob.signMessage(signed.message) }, /not by/);
      await refused({ message: signed.message, signature: "0x1234" }, /65 bytes/);
    });

    it("a nonce the server did not issue", async () => {
      await refused(await signedMessage(alice, { nonce: "abcdef0123456789abcdef01" }), /nonce/);
    });

    it("a message altered after signing, and bodies that are not sign-ins", async () => {
      const signed = await signedMessage(alice);
      await refused({ ...signed, message: signed.message + "\nResources:\n- https://evil.example" }, /not by/);
      await refused({ ...signed, message: signed.message + "\n" }, /canonical/);
      await refused({ signature: signed.signature }, /no message/);
      await refused([1, 2], /JSON object/);
      const duplicate = `{"message":${JSON.stringify(signed.message)},"message":"x","signature":"${signed.signature}"}`;
      const response = await request(server, "POST", "/auth/siwe", {}, duplicate);
      expect(response.status).to.equal(401);
      const huge = await request(server, "POST", "/auth/siwe", {}, JSON.stringify({ message: "x".repeat(20_000) }));
      expect(huge.status).to.equal(413);
      expect(huge.headers["set-cookie"]).to.equal(undefined);
    });

    it("other writes stay refused", async () => {
      const response = await request(server, "POST", "/auth/nonce", {}, "{}");
      expect(response.status).to.equal(405);
      expect((await request(server, "PUT", "/auth/siwe", {}, "{}")).status).to.equal(405);
    });
  });

  it("a malformed access.json: every data route refuses (503 ACCESS_POLICY_INVALID), even to a granted session", async () => {
    const token = await signIn(alice);
    policy((p) => p.grants.push(grant(alice.address, "all")));
    expect((await get(`/instances/${fixture.instanceHash}/protocol`, token)).status).to.equal(200);
    for (const text of ["{not json", '{"statetrail_access":1,"mode":"private","public":[],"grants":[],"x":1}']) {
      fs.writeFileSync(accessFile(fixture.home), text);
      for (const path of [
        ...dataRoutes(fixture.instanceHash),
        "/instances",
        "/models",
        `/models/${fixture.modelHash}`,
      ]) {
        const response = await get(path, token);
        expect(response.status, path).to.equal(503);
        onlyError(response, "ACCESS_POLICY_INVALID");
      }
      expect((await get("/.well-known/statetrail.json")).status).to.equal(404); // no wellKnown here: not refused
    }
    expect(logs.some((line) => /access\.json is not a valid access policy/.test(line))).to.equal(true);
  });
});
