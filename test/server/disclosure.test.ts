import { expect } from "chai";
import { Wallet, type HDNodeWallet } from "ethers";
import fs from "node:fs";
import https from "node:https";
import { sha256Hex } from "../../src/chain/hash";
import { buildSignInMessage } from "../../src/identity/siwe";
import { PinnedAgent } from "../../src/net/pinned-fetch";
import { canonicalBytes } from "../../src/protocol/canonical";
import { readInputDocument, readStateDocument, type Disclosure } from "../../src/protocol/disclosure";
import { type DataField } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server/https";
import { accessFile, emptyPolicy, writePolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "./fixtures";

/*
 * Selective disclosure on the issuer's server (issue 17): a grant limited to some fields gets, of each state
 * document, the data line and those fields' disclosures only, and the execution input only with `input` or
 * `context`. Every assertion that matters is on the raw bytes of the body: no salt and no value of a field the caller
 * wasn't granted appears anywhere in it.
 */

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

const ZERO_GRANT = { name: null, granted_at: "2026-01-01T00:00:00.000Z", until: null } as const;
const SHOWN = 4; // states in the protocol

describe("server: selective disclosure (grants with fields)", function () {
  this.timeout(30_000);
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  const alice = Wallet.createRandom();
  let aliceToken: string;
  const logs: string[] = [];
  let grantSeq = 0;

  const policy = (edit: (p: AccessPolicy) => void = () => undefined): AccessPolicy => {
    const p = emptyPolicy("private");
    edit(p);
    writePolicy(fixture.home, p);
    return p;
  };
  const grant = (scope: Grant["scope"], fields: DataField[] | null | undefined, extra: Partial<Grant> = {}): Grant => ({
    id: `g-${(grantSeq++).toString(16).padStart(8, "0")}`,
    scope,
    grantee: alice.address,
    ...ZERO_GRANT,
    ...(fields === undefined ? {} : { fields }),
    ...extra,
  });

  const signIn = async (wallet: Wallet | HDNodeWallet): Promise<string> => {
    const nonce = JSON.parse((await request(server, "GET", "/auth/nonce")).body.toString()) as { nonce: string };
    const now = new Date();
    const message = buildSignInMessage({
      domain: new URL(server.url).host,
      address: wallet.address,
      uri: server.url,
      chainId: 31337,
      nonce: nonce.nonce,
      issuedAt: now,
      expirationTime: new Date(now.getTime() + 10 * 60_000),
    });
    const body = JSON.stringify({ message, signature: await wallet.signMessage(message) });
    const response = await request(server, "POST", "/auth/siwe", {}, body);
    expect(response.status, response.body.toString()).to.equal(200);
    return (JSON.parse(response.body.toString()) as { token: string }).token;
  };

  const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
    request(server, "GET", path, token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers });

  before(async () => {
    cert = makeCertificate();
    fixture = makeHome();
    fixture.home.writeProtocol(fixture.protocol(SHOWN));
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
    aliceToken = await signIn(alice);
  });

  after(async () => {
    await server?.close();
    fixture?.cleanup();
  });

  afterEach(() => fs.rmSync(accessFile(fixture.home), { force: true }));

  /** Every trace of a disclosure: its salt, its value's canonical JSON, its whole line. */
  const traces = (disclosure: Disclosure): string[] => [
    disclosure.salt,
    canonicalBytes(disclosure.value).toString("utf8"),
    canonicalBytes(disclosure).toString("utf8"),
  ];
  /** The secret markers the fixture puts in each field's values (fixtures.ts). */
  const MARKERS: Record<DataField, string[]> = {
    caught: ["caught-secret-", "CaughtSecret"],
    context: ["context-secret-"],
    input: ["input-secret-"],
    outcome: ["outcome-secret-"],
  };

  /** The exact document of `seq` with only `fields` disclosed. */
  const expected = (seq: number, fields: readonly DataField[]): Buffer => {
    const state = fixture.states[seq];
    const lines = [
      state.dataBytes,
      ...state.disclosures.filter((d) => fields.includes(d.field as DataField)).map((d) => canonicalBytes(d)),
    ];
    return Buffer.concat(lines.flatMap((line) => [line, Buffer.from("\n")]));
  };

  /** Reads every state of the protocol and checks it is exactly the data line and `fields`' disclosures. */
  const expectStates = async (token: string | undefined, fields: readonly DataField[]): Promise<RawResponse[]> => {
    const responses: RawResponse[] = [];
    for (let seq = 0; seq < SHOWN; seq += 1) {
      const state = fixture.states[seq];
      const response = await get(`/states/${state.hash}`, token);
      expect(response.status, response.body.toString()).to.equal(200);
      expect(response.body.equals(expected(seq, fields)), `seq ${seq}: ${response.body.toString()}`).to.equal(true);
      const text = response.body.toString("utf8");
      for (const disclosure of state.disclosures) {
        const field = disclosure.field as DataField;
        if (fields.includes(field)) continue;
        for (const trace of traces(disclosure)) expect(text, `${field} of seq ${seq}`).to.not.include(trace);
        for (const marker of MARKERS[field]) expect(text, `${field} of seq ${seq}`).to.not.include(marker);
      }
      // What it serves reads as a state document: the granted fields disclosed, the others redacted.
      const read = readStateDocument(response.body);
      expect(read.redacted).to.deep.equal(
        (["caught", "context", "input", "outcome"] as const).filter((f) => !fields.includes(f)),
      );
      expect(sha256Hex(read.dataBytes)).to.equal(state.hash);
      expect(response.headers.etag).to.equal(`"${sha256Hex(response.body)}"`);
      expect(String(response.headers["content-type"])).to.equal("application/jsonl; charset=utf-8");
      responses.push(response);
    }
    return responses;
  };

  const expectPrivate = (response: RawResponse): void => {
    expect(response.headers["cache-control"]).to.equal("private, no-store");
    expect(String(response.headers.vary)).to.match(/Authorization/);
  };

  it("a grant of outcome only: each state document is its data line and the outcome disclosure, nothing else", async () => {
    policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, ["outcome"])));
    const responses = await expectStates(aliceToken, ["outcome"]);
    for (const response of responses) expectPrivate(response);
    // HEAD: the same headers, no body.
    const head = await request(server, "HEAD", `/states/${fixture.states[0].hash}`, {
      authorization: `Bearer ${aliceToken}`,
    });
    expect(head.status).to.equal(200);
    expect(head.body.length).to.equal(0);
    expect(head.headers.etag).to.equal(responses[0].headers.etag);
  });

  it("the ETag is the hash of the bytes served: other fields, another ETag, and no 304 across field sets", async () => {
    policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, null)));
    const [whole] = await expectStates(aliceToken, ["caught", "context", "input", "outcome"]);
    expect(whole.body.equals(fixture.states[0].bytes)).to.equal(true);
    policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, ["outcome"])));
    const limited = await get(`/states/${fixture.states[0].hash}`, aliceToken, {
      "if-none-match": String(whole.headers.etag),
    });
    expect(limited.status).to.equal(200);
    expect(limited.headers.etag).to.not.equal(whole.headers.etag);
    expect(limited.body.equals(expected(0, ["outcome"]))).to.equal(true);
    // Its own ETag revalidates.
    const again = await get(`/states/${fixture.states[0].hash}`, aliceToken, {
      "if-none-match": String(limited.headers.etag),
    });
    expect(again.status).to.equal(304);
    expect(again.body.length).to.equal(0);
  });

  it("a grant of no field (structure only): the data line alone, and no execution input", async () => {
    policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, [])));
    await expectStates(aliceToken, []);
    const input = await get(`/instances/${fixture.instanceHash}/input`, aliceToken);
    expect(input.status).to.equal(200);
    expect(input.body.length).to.equal(0);
  });

  it("the input route: an empty body (200, the same headers) without input or context; the document with either", async () => {
    policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, ["caught", "outcome"])));
    const empty = await get(`/instances/${fixture.instanceHash}/input`, aliceToken);
    expect(empty.status).to.equal(200);
    expect(empty.body.length).to.equal(0);
    expect(String(empty.headers["content-type"])).to.equal("application/jsonl; charset=utf-8");
    expect(empty.headers.etag).to.equal(`"${sha256Hex(Buffer.alloc(0))}"`);
    expectPrivate(empty);
    expect(readInputDocument(empty.body, fixture.input.digest)).to.equal(null);
    for (const fields of [["input"], ["context"]] as DataField[][]) {
      policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, fields)));
      const response = await get(`/instances/${fixture.instanceHash}/input`, aliceToken);
      expect(response.status).to.equal(200);
      expect(response.body.equals(fixture.input.document), fields.join()).to.equal(true);
      expect(response.headers.etag).to.equal(`"${sha256Hex(fixture.input.document)}"`);
      expectPrivate(response);
      expect(readInputDocument(response.body, fixture.input.digest)!.equals(fixture.inputBytes)).to.equal(true);
    }
  });

  it("two grants of one caller (input on the instance, outcome on its model): the union", async () => {
    policy((p) =>
      p.grants.push(
        grant(`instance:${fixture.instanceHash}`, ["input"]),
        grant(`model:${fixture.modelHash}`, ["outcome"]),
      ),
    );
    await expectStates(aliceToken, ["input", "outcome"]);
    const input = await get(`/instances/${fixture.instanceHash}/input`, aliceToken);
    expect(input.body.equals(fixture.input.document)).to.equal(true);
    // A grant without fields among them: every field.
    policy((p) =>
      p.grants.push(
        grant(`instance:${fixture.instanceHash}`, ["input"]),
        grant(`model:${fixture.modelHash}`, undefined),
      ),
    );
    await expectStates(aliceToken, ["caught", "context", "input", "outcome"]);
    // A grant of every field on another instance adds nothing to this one's.
    policy((p) =>
      p.grants.push(
        grant(`instance:${sha256Hex("another instance")}`, null),
        grant(`model:${sha256Hex("another model")}`, null),
        grant(`instance:${fixture.instanceHash}`, ["outcome"]),
      ),
    );
    await expectStates(aliceToken, ["outcome"]);
  });

  it("a revoked or expired field grant stops disclosing at the next request", async () => {
    const wide = grant(`instance:${fixture.instanceHash}`, ["input", "context"]); // any order in access.json
    const narrow = grant(`model:${fixture.modelHash}`, ["outcome"]);
    policy((p) => p.grants.push(wide, narrow));
    await expectStates(aliceToken, ["context", "input", "outcome"]);
    policy((p) => p.grants.push(narrow)); // `wide` revoked
    await expectStates(aliceToken, ["outcome"]);
    expect((await get(`/instances/${fixture.instanceHash}/input`, aliceToken)).body.length).to.equal(0);
    policy((p) => p.grants.push({ ...wide, until: "2020-01-01T00:00:00.000Z" }, narrow)); // `wide` expired
    await expectStates(aliceToken, ["outcome"]);
    policy(); // both revoked
    const refused = await get(`/states/${fixture.states[0].hash}`, aliceToken);
    expect(refused.status).to.equal(403);
    for (const state of fixture.states.slice(0, SHOWN)) {
      for (const disclosure of state.disclosures) expect(refused.body.toString()).to.not.include(disclosure.salt);
    }
  });

  it("another caller's grant discloses nothing to this one, and an anonymous caller gets no byte", async () => {
    const bob = Wallet.createRandom();
    const bobToken = await signIn(bob);
    policy((p) =>
      p.grants.push(
        grant("all", null),
        grant(`instance:${fixture.instanceHash}`, ["outcome"], { grantee: bob.address }),
      ),
    );
    await expectStates(bobToken, ["outcome"]);
    const anonymous = await get(`/states/${fixture.states[0].hash}`);
    expect(anonymous.status).to.equal(401);
    expect(anonymous.body.toString()).to.not.include(fixture.states[0].dataBytes.toString());
    expect((await get(`/instances/${fixture.instanceHash}/input`)).status).to.equal(401);
  });

  it("a public instance and open mode: every field, to anyone, cached as content", async () => {
    policy((p) => {
      p.public.push(fixture.instanceHash);
      p.grants.push(grant(`instance:${fixture.instanceHash}`, ["outcome"]));
    });
    for (const token of [undefined, aliceToken]) {
      const responses = await expectStates(token, ["caught", "context", "input", "outcome"]);
      expect(responses[1].body.equals(fixture.states[1].bytes)).to.equal(true);
      expect(responses[1].headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
      const input = await get(`/instances/${fixture.instanceHash}/input`, token);
      expect(input.body.equals(fixture.input.document)).to.equal(true);
    }
    fs.rmSync(accessFile(fixture.home)); // no policy: open
    const responses = await expectStates(undefined, ["caught", "context", "input", "outcome"]);
    expect(responses[0].headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
    policy((p) => {
      p.mode = "open";
      p.grants.push(grant(`instance:${fixture.instanceHash}`, ["outcome"]));
    });
    await expectStates(aliceToken, ["caught", "context", "input", "outcome"]);
    await expectStates(undefined, ["caught", "context", "input", "outcome"]);
  });

  it("the raw input file is never served: not in any mode, and not when the input document is missing", async () => {
    const raw = fixture.inputBytes.toString("utf8");
    const check = async (token?: string): Promise<void> => {
      const response = await get(`/instances/${fixture.instanceHash}/input`, token);
      expect(response.body.toString("utf8")).to.not.include(raw);
      expect(response.body.equals(fixture.inputBytes)).to.equal(false);
    };
    await check();
    policy((p) => p.grants.push(grant("all", null)));
    await check(aliceToken);
    const document = fixture.home.inputDocumentFile(fixture.instanceHash);
    fs.renameSync(document, `${document}.aside`);
    try {
      const missing = await get(`/instances/${fixture.instanceHash}/input`, aliceToken);
      expect(missing.status).to.equal(404);
      expect(missing.body.toString()).to.not.include(raw);
      fs.rmSync(accessFile(fixture.home));
      expect((await get(`/instances/${fixture.instanceHash}/input`)).status).to.equal(404);
    } finally {
      fs.renameSync(`${document}.aside`, document);
    }
  });

  it("a corrupt store: a data line that doesn't hash to its name, or an input document not of input_digest, is 500 with no byte of it", async () => {
    policy((p) => p.grants.push(grant("all", ["outcome"])));
    const state = fixture.states[2];
    const file = fixture.home.stateFile(state.hash);
    const tampered = Buffer.from(state.bytes.toString("utf8").replace('"seq":2', '"seq":9'));
    fs.writeFileSync(file, tampered);
    const document = fixture.home.inputDocumentFile(fixture.instanceHash);
    const forged = Buffer.from(fixture.input.document.toString("utf8").replace("42", "43"));
    fs.writeFileSync(document, forged);
    try {
      const response = await get(`/states/${state.hash}`, aliceToken);
      expect(response.status).to.equal(500);
      expect(response.body.toString()).to.not.include("outcome-secret");
      expect(response.body.toString()).to.not.include(state.disclosures[3].salt);
      const input = await get(`/instances/${fixture.instanceHash}/input`, aliceToken);
      expect(input.status).to.equal(500);
      expect(input.body.toString()).to.not.include("order");
    } finally {
      fs.writeFileSync(file, state.bytes);
      fs.writeFileSync(document, fixture.input.document);
    }
    expect(logs.some((line) => line.includes(`stored state ${state.hash} does not match its hash`))).to.equal(true);
  });

  it("the event stream and the timeline page carry no field value to a field-limited grant", async () => {
    policy((p) => p.grants.push(grant(`instance:${fixture.instanceHash}`, [])));
    const page = await get(`/instances/${fixture.instanceHash}/timeline`, aliceToken);
    expect(page.status).to.equal(200);
    const events = await new Promise<string>((resolve, reject) => {
      const req = https.request(
        {
          host: "127.0.0.1",
          port: server.port,
          path: `/instances/${fixture.instanceHash}/events`,
          headers: { authorization: `Bearer ${aliceToken}` },
          agent: new PinnedAgent({ fingerprint: server.fingerprint }),
        },
        (response) => {
          let text = "";
          response.on("data", (chunk: Buffer) => {
            text += chunk.toString("utf8");
            if ((text.match(/event: state/g) ?? []).length >= SHOWN) {
              req.destroy();
              resolve(text);
            }
          });
          response.on("end", () => reject(new Error(`the stream ended (${response.statusCode}): ${text}`)));
          response.on("error", () => undefined);
        },
      );
      req.on("error", (error) => (error.message.includes("aborted") ? undefined : reject(error)));
      req.end();
    });
    for (const text of [page.body.toString("utf8"), events]) {
      for (const markers of Object.values(MARKERS)) for (const marker of markers) expect(text).to.not.include(marker);
      for (const state of fixture.states) {
        for (const disclosure of state.disclosures) expect(text).to.not.include(disclosure.salt);
      }
      expect(text).to.not.include(fixture.input.disclosure.salt);
    }
  });
});
