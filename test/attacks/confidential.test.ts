import { expect } from "chai";
import { Wallet, type HDNodeWallet, type Signer } from "ethers";
import fs from "node:fs";
import https from "node:https";
import { sha256Hex, type HexHash } from "../../src/chain/hash";
import { StatetrailError } from "../../src/errors";
import { buildSignInMessage } from "../../src/identity/siwe";
import { PinnedAgent } from "../../src/net/pinned-fetch";
import { canonicalBytes } from "../../src/protocol/canonical";
import { fieldDigest, readStateDocument, sealState, type Disclosure } from "../../src/protocol/disclosure";
import {
  dataKeyFor,
  mirrorKeysOf,
  newDataKey,
  openObject,
  sealObject,
  uncompressedPublicKey,
} from "../../src/protocol/envelope";
import { startServer, type RunningServer } from "../../src/server/https";
import { emptyPolicy, writePolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import { renderReport, type VerificationReport } from "../../src/verify";
import { issuerCertificateCheck, SignInSession } from "../../src/verify/auth";
import { discloseOnlyFields, forgeScenario, stateUrl, verifyForged, type ForgedRun } from "../helpers/forge";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "../server/fixtures";
import { conformanceEnv, forgeRecorded, verifyRecorded } from "../verify/conformance/forge-recorded";
import { example, runLocal } from "../verify/conformance/helpers";

/*
 * Attacks on confidential workflows: who may read a private issuer's data (sign-in, grants, listing, mirrors), and
 * whether selective disclosure can be abused to get `valid` (or `valid-as-disclosed`) for something withheld or
 * false. Each test names the attack and asserts the correct behaviour.
 */

interface Raw {
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
): Promise<Raw> {
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
        // An event stream never ends by itself: its first bytes are enough.
        const stream = String(response.headers["content-type"] ?? "").startsWith("text/event-stream");
        response.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          if (stream) response.destroy();
        });
        const done = () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
        response.on("end", done);
        response.on("close", done);
        response.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

let grantSeq = 0;
function grant(grantee: string, scope: Grant["scope"], extra: Partial<Grant> = {}): Grant {
  return {
    id: `g-${(0xc0f00000 + grantSeq++).toString(16).padStart(8, "0")}`,
    scope,
    grantee,
    name: null,
    granted_at: "2026-01-01T00:00:00.000Z",
    until: null,
    ...extra,
  };
}

interface Issuer {
  cert: TestCertificate;
  fixture: TestHome;
  server: RunningServer;
  policy(edit?: (p: AccessPolicy) => void): void;
  close(): Promise<void>;
}

async function startIssuer(): Promise<Issuer> {
  const cert = makeCertificate();
  const fixture = makeHome();
  fixture.home.writeProtocol(fixture.protocol(3));
  const server = await startServer({
    home: fixture.home,
    host: "127.0.0.1",
    port: 0,
    certPem: cert.certPem,
    keyPem: cert.keyPem,
    timeline: true,
    access: { chainId: 31337, recheckMs: 50 },
    log: () => undefined,
  });
  return {
    cert,
    fixture,
    server,
    policy(edit = () => undefined) {
      const p = emptyPolicy("private");
      edit(p);
      writePolicy(fixture.home, p);
    },
    async close() {
      await server.close();
      fixture.cleanup();
    },
  };
}

async function nonceOf(server: RunningServer): Promise<string> {
  const response = await request(server, "GET", "/auth/nonce");
  return (JSON.parse(response.body.toString("utf8")) as { nonce: string }).nonce;
}

interface MessageOptions {
  domain?: string;
  uri?: string;
  chainId?: number;
  address?: string;
}

async function signedFor(server: RunningServer, wallet: Wallet | HDNodeWallet, options: MessageOptions = {}) {
  const now = new Date();
  const message = buildSignInMessage({
    domain: options.domain ?? new URL(server.url).host,
    address: options.address ?? wallet.address,
    uri: options.uri ?? server.url,
    chainId: options.chainId ?? 31337,
    nonce: await nonceOf(server),
    issuedAt: now,
    expirationTime: new Date(now.getTime() + 10 * 60_000),
  });
  return { message, signature: await wallet.signMessage(message) };
}

function post(server: RunningServer, body: unknown): Promise<Raw> {
  return request(server, "POST", "/auth/siwe", {}, JSON.stringify(body));
}

async function tokenAt(server: RunningServer, wallet: Wallet | HDNodeWallet): Promise<string> {
  const response = await post(server, await signedFor(server, wallet));
  expect(response.status, response.body.toString()).to.equal(200);
  return (JSON.parse(response.body.toString("utf8")) as { token: string }).token;
}

function codeOf(response: Raw): string | undefined {
  try {
    return (JSON.parse(response.body.toString("utf8")) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

describe("attack: confidentiality of a private issuer's server", function () {
  this.timeout(60_000);
  let issuer: Issuer;
  let other: Issuer;
  let otherInstance: HexHash;
  let otherModel: { bytes: Buffer; hash: HexHash };
  const alice = Wallet.createRandom();
  const mallory = Wallet.createRandom();

  /** Every secret the fixture's store holds: state field values, salts, the execution input, the model. */
  let secrets: Buffer[];

  before(async () => {
    issuer = await startIssuer();
    other = await startIssuer();
    otherInstance = sha256Hex("confidential: another instance");
    issuer.fixture.home.writeProtocol(issuer.fixture.otherProtocol(otherInstance, 20));
    otherModel = { bytes: Buffer.from('{"StartAt":"Z","States":{"Z":{"Type":"Succeed"}}}') } as typeof otherModel;
    otherModel.hash = sha256Hex(otherModel.bytes);
    issuer.fixture.home.writeModel(otherModel.hash, otherModel.bytes);
    const { fixture } = issuer;
    secrets = [
      fixture.modelBytes,
      Buffer.from(fixture.input.disclosure.salt),
      Buffer.from('{\\"order\\": 42}'),
      ...fixture.states.flatMap((state) =>
        state.disclosures.flatMap((d) => [Buffer.from(d.salt), Buffer.from(JSON.stringify(d.value))]),
      ),
      ...fixture.states.flatMap((state) => [
        Buffer.from(`input-secret-${state.content.seq}`),
        Buffer.from(`caught-secret-${state.content.seq}`),
        Buffer.from(`outcome-secret-${state.content.seq}`),
        Buffer.from(`context-secret-${state.content.seq}`),
      ]),
    ];
  });
  after(async () => {
    await issuer?.close();
    await other?.close();
  });
  afterEach(() => fs.rmSync(issuer.fixture.home.accessFile(), { force: true }));

  const privatePaths = (): string[] => {
    const { fixture } = issuer;
    const h = fixture.instanceHash;
    return [
      `/instances/${h}/protocol`,
      `/instances/${h}/protocol/pages/0`,
      `/instances/${h}/input`,
      `/instances/${h}/events`,
      `/instances/${h}/timeline`,
      `/models/${fixture.modelHash}`,
      ...fixture.states.slice(0, 3).map((state) => `/states/${state.hash}`),
      // The same routes as express decodes them: percent-encoded hex and a HEAD.
      `/instances/${h.replace(/a/g, "%61")}/protocol`,
      `/states/${fixture.states[0].hash.replace(/[0-9]/, (d) => `%3${d}`)}`,
    ];
  };

  function expectNothingLeaks(response: Raw, what: string): void {
    for (const secret of secrets) {
      expect(response.body.includes(secret), `${what} leaks ${secret.toString().slice(0, 40)}`).to.equal(false);
    }
    expect(response.body.includes(Buffer.from(issuer.fixture.instanceHash)), `${what} names the instance`).to.equal(
      false,
    );
  }

  async function expectRefused(token: string | undefined, status: number, code: string, who: string): Promise<void> {
    for (const path of privatePaths()) {
      for (const method of ["GET", "HEAD"]) {
        const response = await request(
          issuer.server,
          method,
          path,
          token === undefined ? {} : { authorization: `Bearer ${token}` },
        );
        expect(response.status, `${who}: ${method} ${path}`).to.equal(status);
        if (method === "GET") expect(codeOf(response), `${who}: ${path}`).to.equal(code);
        expectNothingLeaks(response, `${who}: ${method} ${path}`);
      }
    }
  }

  it("no key (anonymous, also with a forged bearer token or cookie): 401 on every data route, no byte of data", async () => {
    issuer.policy();
    await expectRefused(undefined, 401, "AUTH_REQUIRED", "anonymous");
    await expectRefused("A".repeat(43), 401, "AUTH_REQUIRED", "a made-up token");
    const cookie = await request(issuer.server, "GET", privatePaths()[0], {
      cookie: `statetrail_session=${"B".repeat(43)}`,
    });
    expect(cookie.status).to.equal(401);
  });

  it("a key without a grant, an expired grant, a revoked grant: 403 on every data route, no byte of data", async () => {
    issuer.policy();
    const token = await tokenAt(issuer.server, mallory);
    await expectRefused(token, 403, "GRANT_MISSING", "no grant");
    issuer.policy((p) =>
      p.grants.push(grant(mallory.address, "all", { until: new Date(Date.now() - 1000).toISOString() })),
    );
    await expectRefused(token, 403, "GRANT_MISSING", "an expired grant");
    // Granted, read once, then revoked: the same session reads nothing at the next request.
    issuer.policy((p) => p.grants.push(grant(mallory.address, `instance:${issuer.fixture.instanceHash}`)));
    const granted = await request(issuer.server, "GET", privatePaths()[0], { authorization: `Bearer ${token}` });
    expect(granted.status).to.equal(200);
    issuer.policy();
    await expectRefused(token, 403, "GRANT_MISSING", "a revoked grant");
  });

  it("a grant for another instance, or for another model, reads nothing of this instance: 403", async () => {
    issuer.policy((p) => {
      p.grants.push(grant(mallory.address, `instance:${otherInstance}`));
      p.grants.push(grant(mallory.address, `model:${otherModel.hash}`));
      p.grants.push(grant(alice.address, `instance:${issuer.fixture.instanceHash}`));
    });
    const token = await tokenAt(issuer.server, mallory);
    // The other instance shares this instance's model (fixture), so its model is readable: everything else is not.
    const { fixture } = issuer;
    const h = fixture.instanceHash;
    for (const path of [
      `/instances/${h}/protocol`,
      `/instances/${h}/protocol/pages/0`,
      `/instances/${h}/input`,
      `/instances/${h}/timeline`,
      ...fixture.states.slice(0, 3).map((state) => `/states/${state.hash}`),
    ]) {
      const response = await request(issuer.server, "GET", path, { authorization: `Bearer ${token}` });
      expect(response.status, path).to.equal(403);
      expectNothingLeaks(response, path);
    }
    // Only a model grant: the instance's model is not another model's grant.
    issuer.policy((p) => p.grants.push(grant(mallory.address, `model:${otherModel.hash}`)));
    const model = await request(issuer.server, "GET", `/models/${fixture.modelHash}`, {
      authorization: `Bearer ${token}`,
    });
    expect(model.status).to.equal(403);
  });

  it("the listings (/instances, /models) name no private instance or model to an anonymous caller or a grantee of another", async () => {
    issuer.policy((p) => p.grants.push(grant(mallory.address, `model:${otherModel.hash}`)));
    const token = await tokenAt(issuer.server, mallory);
    for (const headers of [{}, { authorization: `Bearer ${token}` }] as Record<string, string>[]) {
      for (const path of ["/instances", "/models"]) {
        const response = await request(issuer.server, "GET", path, headers);
        expect(response.status, path).to.equal(200);
        const text = response.body.toString("utf8");
        expect(text, path).not.to.include(issuer.fixture.instanceHash);
        expect(text, path).not.to.include(otherInstance);
        expect(text, path).not.to.include(issuer.fixture.modelHash);
        expect(String(response.headers["cache-control"]), path).to.match(/no-store/);
        expect(String(response.headers.vary), path).to.match(/Authorization/i);
      }
    }
  });

  it("a replayed sign-in (the same message and signature again) opens no second session", async () => {
    issuer.policy();
    const signed = await signedFor(issuer.server, alice);
    expect((await post(issuer.server, signed)).status).to.equal(200);
    const again = await post(issuer.server, signed);
    expect(again.status).to.equal(401);
    expect(codeOf(again)).to.equal("AUTH_INVALID");
    expect(again.headers["set-cookie"]).to.equal(undefined);
  });

  it("a cross-origin sign-in (another host or port in domain or uri, http scheme) is refused", async () => {
    issuer.policy();
    const url = new URL(issuer.server.url);
    const otherPort = `${url.hostname}:${Number(url.port) + 1}`;
    for (const options of [
      { domain: otherPort, uri: `https://${otherPort}` },
      { domain: url.host, uri: `https://${otherPort}` },
      { domain: otherPort, uri: issuer.server.url },
      { domain: `localhost:${url.port}`, uri: `https://localhost:${url.port}` },
      { uri: `http://${url.host}` },
    ] satisfies MessageOptions[]) {
      const response = await post(issuer.server, await signedFor(issuer.server, alice, options));
      expect(response.status, JSON.stringify(options)).to.equal(401);
      expect(codeOf(response)).to.equal("AUTH_INVALID");
    }
  });

  it("a signature made for another issuer's server (its nonce, its origin) is refused here, even relayed at once", async () => {
    issuer.policy((p) => p.grants.push(grant(alice.address, "all")));
    // The auditor signs in to `other` (a server not registered for this issuer, e.g. a phishing one): the message names
    // other's origin and nonce; relayed to the issuer, it is refused.
    const forOther = await signedFor(other.server, alice);
    const relayed = await post(issuer.server, forOther);
    expect(relayed.status).to.equal(401);
    expect(codeOf(relayed)).to.equal("AUTH_INVALID");
    // A phishing server that asks for a message naming the *issuer's* origin but with its own nonce: the nonce is
    // unknown to the issuer.
    const now = new Date();
    const message = buildSignInMessage({
      domain: new URL(issuer.server.url).host,
      address: alice.address,
      uri: issuer.server.url,
      chainId: 31337,
      nonce: await nonceOf(other.server),
      issuedAt: now,
      expirationTime: new Date(now.getTime() + 10 * 60_000),
    });
    const phished = await post(issuer.server, { message, signature: await alice.signMessage(message) });
    expect(phished.status).to.equal(401);
  });

  it("a sign-in for another chain, or a message signed by another key than its address, is refused", async () => {
    issuer.policy((p) => p.grants.push(grant(alice.address, "all")));
    const chain = await post(issuer.server, await signedFor(issuer.server, alice, { chainId: 11155111 }));
    expect(chain.status).to.equal(401);
    // Mallory signs a message claiming Alice's address.
    const impersonation = await post(
      issuer.server,
      await signedFor(issuer.server, mallory, { address: alice.address }),
    );
    expect(impersonation.status).to.equal(401);
    expect(codeOf(impersonation)).to.equal("AUTH_INVALID");
  });

  it("a token from another server (another issuer, same auditor, granted there) is no session here", async () => {
    issuer.policy((p) => p.grants.push(grant(alice.address, "all")));
    other.policy((p) => p.grants.push(grant(alice.address, "all")));
    const foreign = await tokenAt(other.server, alice);
    await expectRefused(foreign, 401, "AUTH_REQUIRED", "another server's token");
    const cookie = await request(issuer.server, "GET", privatePaths()[0], { cookie: `statetrail_session=${foreign}` });
    expect(cookie.status).to.equal(401);
  });

  it("a grant of some fields: no salt or value of another field in any answer (state, input, timeline, events)", async () => {
    issuer.policy((p) =>
      p.grants.push(grant(mallory.address, `instance:${issuer.fixture.instanceHash}`, { fields: ["outcome"] })),
    );
    const token = await tokenAt(issuer.server, mallory);
    const { fixture } = issuer;
    const hidden = fixture.states.flatMap((state) =>
      state.disclosures
        .filter((d) => d.field !== "outcome")
        .flatMap((d) => [Buffer.from(d.salt), Buffer.from(JSON.stringify(d.value))]),
    );
    hidden.push(Buffer.from(fixture.input.disclosure.salt));
    const h = fixture.instanceHash;
    for (const path of [
      ...fixture.states.slice(0, 3).map((state) => `/states/${state.hash}`),
      `/instances/${h}/input`,
      `/instances/${h}/timeline`,
      `/instances/${h}/events`,
      `/instances/${h}/protocol`,
      `/instances/${h}/protocol/pages/0`,
    ]) {
      const response = await request(issuer.server, "GET", path, { authorization: `Bearer ${token}` });
      expect(response.status, path).to.equal(200);
      for (const secret of hidden) {
        expect(response.body.includes(secret), `${path} leaks ${secret.toString().slice(0, 40)}`).to.equal(false);
      }
    }
    // A conditional request naming the full document's hash (what a grantee of every field would get) learns nothing.
    const full = fixture.states[0];
    const conditional = await request(issuer.server, "GET", `/states/${full.hash}`, {
      authorization: `Bearer ${token}`,
      "if-none-match": `"${sha256Hex(full.bytes)}"`,
    });
    expect(conditional.status).to.equal(200);
  });

  it("private answers can't be read by another site's page with the session cookie (no credentialed CORS)", async () => {
    issuer.policy((p) => p.grants.push(grant(alice.address, "all")));
    const token = await tokenAt(issuer.server, alice);
    const response = await request(issuer.server, "GET", privatePaths()[0], {
      cookie: `statetrail_session=${token}`,
      origin: "https://evil.example",
    });
    expect(response.status).to.equal(200);
    expect(response.headers["access-control-allow-credentials"]).to.equal(undefined);
    expect(response.headers["access-control-allow-origin"]).not.to.equal("https://evil.example");
    expect(response.headers["cache-control"]).to.equal("private, no-store");
  });
});

describe("attack: phishing the auditor's sign-in (client side)", function () {
  this.timeout(60_000);
  let issuer: Issuer;

  before(async () => {
    issuer = await startIssuer();
  });
  after(async () => {
    await issuer?.close();
  });

  /** A wallet that records every message it is asked to sign. */
  function spyWallet(): { signer: Signer; signed: string[] } {
    const wallet = Wallet.createRandom();
    const signed: string[] = [];
    const signer = Object.assign(Object.create(wallet) as Wallet, {
      signMessage: async (message: string | Uint8Array) => {
        signed.push(String(message));
        return wallet.signMessage(message);
      },
    });
    return { signer, signed };
  }

  it("asked about an issuer, a server whose certificate that issuer did not register gets no signature", async () => {
    issuer.policy((p) => p.grants.push(grant(Wallet.createRandom().address, "all")));
    const { signer, signed } = spyWallet();
    const expectedIssuer = Wallet.createRandom().address;
    const chain = {
      certificateOf: async () => ({ holder: null, revokedAt: 0, notBefore: 0, notAfter: 0 }),
    } as unknown as Parameters<typeof issuerCertificateCheck>[0];
    const session = new SignInSession({ auditor: signer, chainId: 31337 }).withServerCheck(
      issuerCertificateCheck(chain, expectedIssuer),
    );
    const error = await session.fetch(`${issuer.server.url}/instances/${issuer.fixture.instanceHash}/protocol`).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal("CERT_NOT_REGISTERED");
    expect(signed, "nothing signed for the impostor").to.deep.equal([]);
    expect(session.signIns).to.equal(0);
  });

  it("a revoked or expired certificate of the issuer gets no signature either", async () => {
    issuer.policy();
    for (const record of [
      { revokedAt: 5, notBefore: 0, notAfter: 2 ** 40 },
      { revokedAt: 0, notBefore: 0, notAfter: 10 },
    ]) {
      const { signer, signed } = spyWallet();
      const expectedIssuer = Wallet.createRandom().address;
      const chain = {
        certificateOf: async () => ({ holder: expectedIssuer, ...record }),
      } as unknown as Parameters<typeof issuerCertificateCheck>[0];
      const session = new SignInSession({ auditor: signer, chainId: 31337 }).withServerCheck(
        issuerCertificateCheck(chain, expectedIssuer, async () => 1_000),
      );
      const error = await session.fetch(`${issuer.server.url}/instances/${issuer.fixture.instanceHash}/protocol`).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect((error as StatetrailError).code).to.be.oneOf(["CERT_REVOKED", "CERT_EXPIRED"]);
      expect(signed).to.deep.equal([]);
    }
  });
});

describe("attack: selective disclosure can't be abused for another value or a false `valid`", function () {
  this.timeout(180_000);

  const content = {
    statetrail_state: 3 as const,
    instance_hash: sha256Hex("sd attack instance"),
    seq: 0,
    state_name: "Charge",
    state_type: "Task" as const,
    iteration_path: [],
    attempt: 0,
    input: { amount: 100, currency: "EUR", note: "A" },
    caught: null,
    outcome: { result: { approved: true } },
    context: null,
  };

  function documentWith(lines: readonly string[]): Buffer {
    return Buffer.from(lines.map((line) => `${line}\n`).join(""), "utf8");
  }

  it("one digest, one value: no re-encoding of a disclosed value (number form, key order, escapes, spacing) verifies", () => {
    const sealed = sealState(content);
    const data = sealed.dataBytes.toString("utf8");
    const input = sealed.disclosures.find((d) => d.field === "input")!;
    const genuine = canonicalBytes(input).toString("utf8");
    expect(readStateDocument(documentWith([data, genuine])).disclosed.input).to.deep.equal(content.input);
    const prefix = `{"field":"input","salt":"${input.salt}","value":`;
    for (const value of [
      '{"amount":100.0,"currency":"EUR","note":"A"}',
      '{"amount":1e2,"currency":"EUR","note":"A"}',
      '{"currency":"EUR","amount":100,"note":"A"}',
      '{"amount":100,"currency":"EUR","note":"\\u0041"}',
      '{"amount":100, "currency":"EUR","note":"A"}',
      '{"amount":100,"currency":"EUR","note":"A","note":"A"}',
      '{"amount":100,"currency":"EUR","note":"B"}',
    ]) {
      const line = `${prefix}${value}}`;
      expect(() => readStateDocument(documentWith([data, line])), value).to.throw(StatetrailError);
    }
  });

  it("a disclosure moved to another field of the same state (same salt and value) does not verify", () => {
    // An issuer reusing one salt for two fields: the field name is in the digest, so a disclosure can't be relabelled.
    const salt = "ab".repeat(16);
    const sealed = sealState(
      { ...content, outcome: { result: 1 }, input: { result: 1 } as unknown as typeof content.input },
      {
        caught: salt,
        context: salt,
        input: salt,
        outcome: salt,
      },
    );
    const data = sealed.dataBytes.toString("utf8");
    expect(sealed.data.fields.input).not.to.equal(sealed.data.fields.outcome);
    const relabelled = canonicalBytes({ field: "outcome", salt, value: { result: 1 } } satisfies Disclosure);
    expect(fieldDigest(salt, "outcome", { result: 1 })).to.equal(sealed.data.fields.outcome);
    // The genuine outcome verifies; an input line relabelled as the caught error does not.
    expect(readStateDocument(documentWith([data, relabelled.toString()])).disclosed.outcome).to.deep.equal({
      result: 1,
    });
    const asCaught = canonicalBytes({ field: "caught", salt, value: { result: 1 } }).toString();
    expect(() => readStateDocument(documentWith([data, asCaught]))).to.throw(/does not match its digest/);
  });

  it("a redacted field presented as disclosed with value null (a fake 'nothing here') does not verify", () => {
    const sealed = sealState(content);
    const data = sealed.dataBytes.toString("utf8");
    const fake = canonicalBytes({ field: "input", salt: "cd".repeat(16), value: null }).toString();
    expect(() => readStateDocument(documentWith([data, fake]))).to.throw(/does not match its digest/);
    // A redaction is reported as one, never as a null value.
    const read = readStateDocument(documentWith([data]));
    expect(read.redacted).to.deep.equal(["caught", "context", "input", "outcome"]);
    expect(read.disclosed).to.deep.equal({});
  });

  function step(report: VerificationReport, id: string) {
    return report.steps.find((candidate) => candidate.id === id)!;
  }

  it("a field withheld and a null disclosed in its place (digest of null under a fresh salt) → invalid, never valid", async () => {
    const { env, run } = await forgeScenario();
    const sealed = run.sealed[2];
    const lines = sealed.document.toString("utf8").split("\n").slice(0, -1);
    const index = lines.findIndex((line) => line.startsWith('{"field":"input"'));
    lines[index] = canonicalBytes({ field: "input", salt: "ef".repeat(16), value: null }).toString();
    env.server.serve(stateUrl(run.hashes[2]), documentWith(lines));
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(step(report, "V6").status).to.equal("fail");
  });

  it("every field of every state withheld: never valid, the summary counts each state", async () => {
    const { env, run } = await forgeScenario();
    for (let seq = 0; seq < run.hashes.length; seq += 1) discloseOnlyFields(env.server, run as ForgedRun, seq, []);
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict, renderReport(report)).to.equal("valid-as-disclosed");
    expect(report.disclosure).to.deep.include({ states_with_redactions: run.hashes.length, complete: false });
  });

  it("valid-as-disclosed hides no false disclosed value: a lie in entry 0's disclosed input, a later Task outcome withheld → invalid", async () => {
    const base = JSON.parse(fs.readFileSync(example("order-fulfilment.input.json"), "utf8")) as object;
    const run = await runLocal(
      example("order-fulfilment.asl.json"),
      { ...base, orderId: `o-${Math.random().toString(36).slice(2, 8)}` },
      { handlersModule: example("order-fulfilment.handlers.js") },
    );
    const env = await conformanceEnv();
    const states = structuredClone(run.states);
    expect(states[0].state_type).to.equal("Task");
    // The lie: entry 0 (the first Task, entered with the execution input itself) records another input, disclosed.
    states[0] = { ...states[0], input: { orderId: "forged", items: [], total: 0 } };
    const recorded = (await forgeRecorded(env, run.model, run.input, states, "succeeded")) as ForgedRun;
    // The issuer withholds only the outcome of the last Task (entered long after entry 0, so it can't explain it).
    const lastTask = states.map((state) => state.state_type).lastIndexOf("Task");
    expect(lastTask).to.be.greaterThan(0);
    discloseOnlyFields(env.server, recorded, lastTask, ["caught", "context", "input"]);
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    // Everything the lie depends on was disclosed (the execution input, entry 0's Context Object): "nothing you were
    // shown is false" (docs/AUDITOR.md) requires this to be found, as it is when nothing is withheld.
    expect(report.verdict, shown).to.equal("invalid");
    expect(step(report, "V9").status, shown).to.equal("fail");
  });
  it("a model no replay can follow, with a Task outcome withheld: could not verify, not valid-as-disclosed", async () => {
    const model = {
      StartAt: "Work",
      States: {
        Work: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:work", Next: "Stamp" },
        Stamp: { Type: "Pass", Parameters: { "id.$": "States.UUID()" }, End: true },
      },
    };
    const run = await runLocal(model, { order: 1 }, { handlers: { Work: () => ({ done: true }) } });
    const env = await conformanceEnv();
    const recorded = (await forgeRecorded(env, run.model, run.input, run.states, "succeeded")) as ForgedRun;
    discloseOnlyFields(env.server, recorded, 0, ["caught", "context", "input"]);
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    // With everything disclosed this run can't be replayed either (a random value): "every check that could be made
    // passed" (valid-as-disclosed) would overstate it.
    expect(step(report, "V9"), shown).to.include({ status: "error", code: "NOT_REPLAYABLE" });
    expect(report.verdict, shown).to.equal("could-not-verify");
  });
});

describe("attack: encrypted mirror copies are readable only with a recipient's key", function () {
  const instance = sha256Hex("mirror attack instance");
  const elsewhere = sha256Hex("mirror attack: another instance");
  const auditor = Wallet.createRandom();
  const outsider = Wallet.createRandom();
  const path = `instances/${instance}/states/${sha256Hex("a state")}`;
  const secret = Buffer.from('{"input":{"iban":"DE00 1234"}}');

  it("no key but a recipient's opens the data key; a keys.json entry replayed from another instance is refused", () => {
    const dataKey = newDataKey();
    const keys = mirrorKeysOf(instance, dataKey, [
      { address: auditor.address, publicKey: uncompressedPublicKey(auditor.signingKey.publicKey) },
    ]);
    expect(dataKeyFor(keys, auditor.address, auditor.privateKey).equals(dataKey)).to.equal(true);
    expect(() => dataKeyFor(keys, outsider.address, outsider.privateKey)).to.throw(StatetrailError);
    // The outsider claims the auditor's entry: it can't unwrap it.
    expect(() => dataKeyFor(keys, auditor.address, outsider.privateKey)).to.throw(StatetrailError);
    // The auditor's entry of another instance's keys.json, moved into this one.
    const foreign = mirrorKeysOf(elsewhere, newDataKey(), [
      { address: auditor.address, publicKey: uncompressedPublicKey(auditor.signingKey.publicKey) },
    ]);
    const spliced = { ...keys, recipients: foreign.recipients };
    expect(() => dataKeyFor(spliced, auditor.address, auditor.privateKey)).to.throw(StatetrailError);
  });

  it("a sealed object holds no plaintext, and opens only under its own instance and path with its own key", () => {
    const dataKey = newDataKey();
    const sealed = sealObject(dataKey, instance, path, secret);
    expect(sealed.includes(Buffer.from("iban"))).to.equal(false);
    expect(openObject(dataKey, instance, path, sealed).equals(secret)).to.equal(true);
    expect(() => openObject(newDataKey(), instance, path, sealed)).to.throw();
    expect(() => openObject(dataKey, elsewhere, path, sealed)).to.throw();
    expect(() => openObject(dataKey, instance, `${path}0`, sealed)).to.throw();
  });
});
