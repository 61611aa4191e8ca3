import { expect } from "chai";
import { Wallet, type Signer } from "ethers";
import type { IncomingMessage } from "node:http";
import { sha256Hex } from "../../src/chain/hash";
import { devPrivateKey } from "../../src/chain/keys";
import { StatetrailError } from "../../src/errors";
import { FetchError, sseSubscribe } from "../../src/net/pinned-fetch";
import { startServer, type RunningServer } from "../../src/server/https";
import { emptyPolicy, writePolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import { SignInSession, signInSessionFor } from "../../src/verify/auth";
import { FetchSession, pinnedFetcher } from "../../src/verify/fetcher";
import { readInputDocument } from "../../src/protocol/disclosure";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "../server/fixtures";

/**
 * The auditor's sign-in client (src/verify/auth.ts) against the issuer's real server (src/server/access.ts) over real
 * HTTPS: what it sends where, counted on the servers' side.
 */

interface Seen {
  method: string;
  path: string;
  authorization: string | undefined;
}

async function rejection(promise: Promise<unknown>): Promise<StatetrailError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, "expected a rejection").to.be.instanceOf(Error);
  return error as StatetrailError;
}

interface Issuer {
  cert: TestCertificate;
  fixture: TestHome;
  server: RunningServer;
  seen: Seen[];
  policy(edit?: (p: AccessPolicy) => void): void;
  url(path: string): string;
  close(): Promise<void>;
}

let grantSeq = 0;
function grant(grantee: string, scope: Grant["scope"]): Grant {
  return {
    id: `g-${(grantSeq++).toString(16).padStart(8, "0")}`,
    scope,
    grantee,
    name: null,
    granted_at: "2026-01-01T00:00:00.000Z",
    until: null,
  };
}

/** An issuer's server with access control on chain 31337, its clock `clock()` ms, counting every request it gets. */
async function startIssuer(
  clock: () => number,
  mount?: (issuer: Issuer) => Parameters<typeof startServer>[0]["mount"],
  port = 0,
) {
  const cert = makeCertificate();
  const fixture = makeHome();
  fixture.home.writeProtocol(fixture.protocol(3));
  const issuer = { cert, fixture, seen: [] as Seen[] } as Issuer;
  issuer.server = await startServer({
    home: fixture.home,
    host: "127.0.0.1",
    port,
    certPem: cert.certPem,
    keyPem: cert.keyPem,
    access: { chainId: 31337, now: () => new Date(clock()), recheckMs: 50 },
    log: () => undefined,
    mount: mount?.(issuer),
  });
  issuer.server.server.on("request", (req: IncomingMessage) =>
    issuer.seen.push({ method: req.method ?? "", path: req.url ?? "", authorization: req.headers.authorization }),
  );
  issuer.policy = (edit = () => undefined) => {
    const p = emptyPolicy("private");
    edit(p);
    writePolicy(fixture.home, p);
  };
  issuer.url = (path) => `${issuer.server.url}${path}`;
  issuer.close = async () => {
    await issuer.server.close();
    fixture.cleanup();
  };
  return issuer;
}

describe("verify: signing in to a private issuer's server (auth.ts)", function () {
  this.timeout(60_000);
  let serverOffset = 0;
  let clientOffset = 0;
  let a: Issuer;
  let b: Issuer;
  const alice = Wallet.createRandom();
  const bob = Wallet.createRandom();
  const clientNow = () => Date.now() + clientOffset;
  const session = (auditor: Signer | null, chainId = 31337) => new SignInSession({ auditor, chainId, now: clientNow });
  const protocolPath = () => `/instances/${a.fixture.instanceHash}/protocol`;
  const signInsAt = (issuer: Issuer) => issuer.seen.filter((s) => s.method === "POST" && s.path === "/auth/siwe");
  const authRequests = (issuer: Issuer) => issuer.seen.filter((s) => s.path.startsWith("/auth/"));

  before(async () => {
    b = await startIssuer(() => Date.now() + serverOffset);
    a = await startIssuer(
      () => Date.now() + serverOffset,
      () => (app) => {
        // A challenge whose nonce is to be fetched from another origin (b's).
        app.get("/test/elsewhere", (_req, res) => {
          res
            .status(401)
            .set("WWW-Authenticate", `SIWE realm="${a.server.url}", nonce_uri="${b.server.url}/auth/nonce"`)
            .json({ error: { code: "AUTH_REQUIRED", message: "sign in", hint: "sign in" } });
        });
        // 401s without a SIWE challenge: statetrail's code, and someone else's.
        app.get("/test/unchallenged", (_req, res) => {
          res.status(401).json({ error: { code: "AUTH_REQUIRED", message: "no challenge", hint: "" } });
        });
        app.get("/test/basic", (_req, res) => {
          res
            .status(401)
            .set("WWW-Authenticate", 'Basic realm="x"')
            .json({ error: { code: "NOPE", message: "basic" } });
        });
        // A server that asks to sign in whatever it is given.
        app.get("/test/always", (_req, res) => {
          res
            .status(401)
            .set("WWW-Authenticate", `SIWE realm="${a.server.url}", nonce_uri="/auth/nonce"`)
            .json({ error: { code: "AUTH_REQUIRED", message: "sign in", hint: "sign in" } });
        });
      },
    );
  });
  after(async () => {
    await a?.close();
    await b?.close();
  });
  beforeEach(() => {
    serverOffset = 0;
    clientOffset = 0;
    a.seen.length = 0;
    b.seen.length = 0;
    a.policy((p) => p.grants.push(grant(alice.address, `instance:${a.fixture.instanceHash}`)));
    b.policy((p) => p.grants.push(grant(alice.address, "all")));
  });

  it("signs in on a 401 SIWE challenge (nonce and sign-in on the fetched origin) and retries once with the token", async () => {
    const auth = session(alice);
    const response = await auth.fetch(a.url(protocolPath()), { fingerprint: a.server.fingerprint });
    expect(response.status).to.equal(200);
    expect(JSON.parse(response.body.toString("utf8"))).to.include({ instance_hash: a.fixture.instanceHash });
    expect(auth.signIns).to.equal(1);
    const token = auth.sessionFor(a.url("/"))!.token;
    expect(a.seen).to.deep.equal([
      { method: "GET", path: protocolPath(), authorization: undefined },
      { method: "GET", path: "/auth/nonce", authorization: undefined },
      { method: "POST", path: "/auth/siwe", authorization: undefined },
      { method: "GET", path: protocolPath(), authorization: `Bearer ${token}` },
    ]);
    expect(auth.sessionFor(a.url("/"))).to.include({ address: alice.address, fingerprint: a.server.fingerprint });
    expect(b.seen).to.deep.equal([]);
  });

  it("reuses the token for every later request of the origin, concurrent ones included: one sign-in", async () => {
    const auth = session(alice);
    const paths = [
      protocolPath(),
      `${protocolPath()}/pages/0`,
      `/instances/${a.fixture.instanceHash}/input`,
      `/models/${a.fixture.modelHash}`,
      ...a.fixture.states.slice(0, 3).map((state) => `/states/${state.hash}`),
    ];
    // All at once, before any session exists: they all get a 401, and wait for the one sign-in.
    const responses = await Promise.all(paths.map((path) => auth.fetch(a.url(path))));
    expect(responses.map((r) => r.status)).to.deep.equal(paths.map(() => 200));
    for (const path of paths) await auth.fetch(a.url(path));
    expect(auth.signIns).to.equal(1);
    expect(signInsAt(a)).to.have.length(1);
    // After the sign-in, every request carries the token.
    const token = auth.sessionFor(a.url("/"))!.token;
    expect(a.seen.slice(-paths.length).every((s) => s.authorization === `Bearer ${token}`)).to.equal(true);
  });

  it("the verifier's fetcher signs in through its FetchSession, and one signer's sessions are kept for the process", async () => {
    const auth = signInSessionFor(alice, 31337);
    expect(signInSessionFor(alice, 31337)).to.equal(auth);
    expect(signInSessionFor(alice, 1)).to.not.equal(auth);
    const web = new FetchSession(pinnedFetcher, 15_000, auth);
    const fetched = await web.get(a.url(protocolPath()), 1024 * 1024);
    expect(fetched.certificate?.fingerprint).to.equal(a.server.fingerprint);
    await new FetchSession(pinnedFetcher, 15_000, signInSessionFor(alice, 31337)).get(
      a.url(`/instances/${a.fixture.instanceHash}/input`),
      1024,
    );
    expect(auth.signIns).to.equal(1);
  });

  it("without an auditor key: AUTH_REQUIRED naming the options, and nothing is signed", async () => {
    const auth = session(null);
    const error = await rejection(auth.fetch(a.url(protocolPath())));
    expect(error.code).to.equal("AUTH_REQUIRED");
    for (const option of ["--auditor-key-env", "--auditor-keystore", "STATETRAIL_AUDITOR_KEY"]) {
      expect(error.hint).to.contain(option);
      expect(error.message).to.contain(option); // reports carry the message
    }
    expect(authRequests(a)).to.deep.equal([]);
    // Through the verifier's fetcher too (a session without a signer is what verifyProtocol uses without `auditor`).
    const web = new FetchSession(pinnedFetcher, 15_000, signInSessionFor(null, 31337));
    expect((await rejection(web.get(a.url(protocolPath()), 1024 * 1024))).code).to.equal("AUTH_REQUIRED");
  });

  it("a session without a grant: GRANT_MISSING naming the address and `statetrail grant`", async () => {
    const auth = session(bob);
    const error = await rejection(auth.fetch(a.url(protocolPath())));
    expect(error.code).to.equal("GRANT_MISSING");
    expect(error.message).to.contain(bob.address);
    expect(error.hint).to.contain(`statetrail grant instance:${a.fixture.instanceHash} ${bob.address}`);
    expect(error.message).to.contain(error.hint!); // reports carry the message
    expect(auth.signIns).to.equal(1); // signed in, then refused: not signed in again
    expect((await rejection(auth.fetch(a.url(protocolPath())))).code).to.equal("GRANT_MISSING");
    expect(auth.signIns).to.equal(1);
  });

  it("never signs in to an origin other than the fetched one: a challenge naming another origin's nonce is refused", async () => {
    const auth = session(alice);
    const error = await rejection(auth.fetch(a.url("/test/elsewhere")));
    expect(error.code).to.equal("AUTH_INVALID");
    expect(error.message).to.contain("another origin");
    expect(b.seen).to.deep.equal([]);
    expect(authRequests(a)).to.deep.equal([]);
    expect(auth.signIns).to.equal(0);
  });

  it("a verification restricted to the issuer's origin sends nothing to another origin, so never signs in there", async () => {
    const auth = session(alice);
    const web = new FetchSession(pinnedFetcher, 15_000, auth);
    web.restrictTo(a.server.url);
    const error = await rejection(web.get(b.url(`/instances/${b.fixture.instanceHash}/protocol`), 1024 * 1024));
    expect(error.code).to.equal("FETCH_FAILED");
    expect(error.message).to.contain("not on the issuer's origin");
    expect(b.seen).to.deep.equal([]);
    expect(auth.signIns).to.equal(0);
  });

  it("never sends a token to another origin (nor to another certificate of the same origin)", async () => {
    const auth = session(alice);
    await auth.fetch(a.url(protocolPath()));
    const aToken = auth.sessionFor(a.url("/"))!.token;
    // b is asked without a's token; it challenges, and the client signs in to b itself (the origin fetched).
    await auth.fetch(b.url(`/instances/${b.fixture.instanceHash}/protocol`));
    expect(b.seen[0]).to.deep.include({
      path: `/instances/${b.fixture.instanceHash}/protocol`,
      authorization: undefined,
    });
    expect(b.seen.some((s) => s.authorization?.includes(aToken))).to.equal(false);
    const bToken = auth.sessionFor(b.url("/"))!.token;
    expect(bToken).to.not.equal(aToken);
    expect(a.seen.some((s) => s.authorization?.includes(bToken))).to.equal(false);
    expect(auth.signIns).to.equal(2);
    // A token is bound to the certificate it was obtained over.
    expect(auth.headersFor(a.url("/x"), a.server.fingerprint)).to.deep.equal({ authorization: `Bearer ${aToken}` });
    expect(auth.headersFor(a.url("/x"), b.server.fingerprint)).to.deep.equal({});
  });

  it("a 401 without a SIWE challenge: never signs in; AUTH_REQUIRED only without a key and statetrail's code", async () => {
    for (const path of ["/test/unchallenged", "/test/basic"]) {
      const error = await rejection(session(alice).fetch(a.url(path)));
      expect(error.code, path).to.equal("FETCH_FAILED");
      expect((error as FetchError).status, path).to.equal(401);
    }
    expect((await rejection(session(null).fetch(a.url("/test/unchallenged")))).code).to.equal("AUTH_REQUIRED");
    expect((await rejection(session(null).fetch(a.url("/test/basic")))).code).to.equal("FETCH_FAILED");
    expect(authRequests(a)).to.deep.equal([]);
  });

  it("a server restarted at the same origin with another certificate never gets the token; it is signed in to anew", async () => {
    const c = await startIssuer(() => Date.now());
    let restarted: Issuer | undefined;
    try {
      c.policy((p) => p.grants.push(grant(alice.address, "all")));
      const auth = session(alice);
      const path = `/instances/${c.fixture.instanceHash}/protocol`;
      await auth.fetch(c.url(path));
      const first = auth.sessionFor(c.url("/"))!;
      expect(first.fingerprint).to.equal(c.server.fingerprint);
      const port = c.server.port;
      await c.server.close();
      restarted = await startIssuer(() => Date.now(), undefined, port);
      restarted.policy((p) => p.grants.push(grant(alice.address, "all")));
      expect(restarted.server.url).to.equal(c.server.url); // the same origin, another certificate
      expect(restarted.server.fingerprint).to.not.equal(first.fingerprint);
      const response = await auth.fetch(restarted.url(path));
      expect(response.certificate.fingerprint).to.equal(restarted.server.fingerprint);
      expect(restarted.seen.some((s) => s.authorization?.includes(first.token))).to.equal(false);
      expect(restarted.seen.map((s) => s.path)).to.deep.equal([path, "/auth/nonce", "/auth/siwe", path]);
      expect(auth.signIns).to.equal(2);
      expect(auth.sessionFor(c.url("/"))!.fingerprint).to.equal(restarted.server.fingerprint);
    } finally {
      await restarted?.close();
      c.fixture.cleanup();
      await c.server.close();
    }
  });

  it("an expired session: the server's 401 to the old token makes one new sign-in, then the request succeeds", async () => {
    const auth = session(alice);
    await auth.fetch(a.url(protocolPath()));
    const first = auth.sessionFor(a.url("/"))!.token;
    // The server's clock past the session's end (10 minutes), the client's not quite (it still sends the token).
    serverOffset = 10 * 60_000 + 30_000;
    clientOffset = 9 * 60_000;
    a.seen.length = 0;
    const response = await auth.fetch(a.url(`/instances/${a.fixture.instanceHash}/input`));
    expect(readInputDocument(response.body, a.fixture.input.digest)?.equals(a.fixture.inputBytes)).to.equal(true);
    expect(auth.signIns).to.equal(2);
    const second = auth.sessionFor(a.url("/"))!.token;
    expect(second).to.not.equal(first);
    expect(a.seen.map((s) => [s.method, s.path, s.authorization])).to.deep.equal([
      ["GET", `/instances/${a.fixture.instanceHash}/input`, `Bearer ${first}`],
      ["GET", "/auth/nonce", undefined],
      ["POST", "/auth/siwe", undefined],
      ["GET", `/instances/${a.fixture.instanceHash}/input`, `Bearer ${second}`],
    ]);
    // A session the client knows has ended is not sent at all.
    clientOffset = 20 * 60_000;
    serverOffset = 20 * 60_000;
    expect(auth.sessionFor(a.url("/"))).to.equal(undefined);
  });

  it("a server asking to sign in again right after a sign-in: AUTH_REQUIRED, no loop", async () => {
    const auth = session(alice);
    const error = await rejection(auth.fetch(a.url("/test/always")));
    expect(error.code).to.equal("AUTH_REQUIRED");
    expect(error.message).to.contain("right after a sign-in");
    expect(auth.signIns).to.equal(1);
    expect(a.seen.filter((s) => s.path === "/test/always")).to.have.length(2);
  });

  it("refuses a well-known development key off the local chain, before asking the server for anything", async () => {
    const dev = new Wallet(devPrivateKey(0));
    const error = await rejection(session(dev, 11155111).fetch(a.url(protocolPath())));
    expect(error.code).to.equal("KEY_REFUSED");
    expect(error.message).to.contain(dev.address);
    expect(authRequests(a)).to.deep.equal([]);
    // On the local chain (31337) it signs in (and, without a grant for it, gets GRANT_MISSING).
    const local = session(dev, 31337);
    expect((await rejection(local.fetch(a.url(protocolPath())))).code).to.equal("GRANT_MISSING");
    expect(local.signIns).to.equal(1);
  });

  it("a sign-in refused by the server (another chain): AUTH_INVALID, not tried again for every request", async () => {
    const auth = session(alice, 1);
    const error = await rejection(auth.fetch(a.url(protocolPath())));
    expect(error.code).to.equal("AUTH_INVALID");
    expect(error.message).to.match(/chain/i);
    expect((await rejection(auth.fetch(a.url(`/instances/${a.fixture.instanceHash}/input`)))).code).to.equal(
      "AUTH_INVALID",
    );
    expect(signInsAt(a)).to.have.length(1);
  });

  it("a view with a server check signs in only where the check passes; the tokens are the session's", async () => {
    const auth = session(alice);
    const refusing = auth.withServerCheck(async (origin, fingerprint) => {
      expect(origin).to.equal(a.server.url);
      expect(fingerprint).to.equal(a.server.fingerprint);
      throw new StatetrailError("CERT_NOT_REGISTERED", "not the issuer's certificate");
    });
    expect((await rejection(refusing.fetch(a.url(protocolPath())))).code).to.equal("CERT_NOT_REGISTERED");
    expect(authRequests(a)).to.deep.equal([]);
    const checked: string[] = [];
    const passing = auth.withServerCheck(async (_origin, fingerprint) => void checked.push(fingerprint));
    expect((await passing.fetch(a.url(protocolPath()))).status).to.equal(200);
    expect(checked).to.deep.equal([a.server.fingerprint]);
    // The session the view obtained is the session's: used without a new sign-in, even by the refusing view.
    expect((await refusing.fetch(a.url(protocolPath()))).status).to.equal(200);
    expect(auth.signIns).to.equal(1);
  });

  it("the event stream: a 401 carries the challenge; after the sign-in it opens with the session's Authorization", async () => {
    const auth = session(alice);
    const events = a.url(`/instances/${a.fixture.instanceHash}/events`);
    const refused = sseSubscribe(events, { fingerprint: a.server.fingerprint, onEvent: () => undefined });
    const error = (await rejection(refused.ready)) as FetchError;
    expect(error).to.be.instanceOf(FetchError);
    expect(error.status).to.equal(401);
    expect(String(error.headers?.["www-authenticate"])).to.match(/^SIWE /);
    await auth.answer(events, error);
    expect(auth.signIns).to.equal(1);
    const stream = sseSubscribe(events, {
      fingerprint: a.server.fingerprint,
      headers: auth.headersFor(events, a.server.fingerprint),
      onEvent: () => undefined,
    });
    try {
      const certificate = await stream.ready;
      expect(certificate.fingerprint).to.equal(a.server.fingerprint);
    } finally {
      stream.close();
    }
    const opened = a.seen.filter((s) => s.path.endsWith("/events"));
    expect(opened.map((s) => s.authorization)).to.deep.equal([undefined, `Bearer ${auth.sessionFor(events)!.token}`]);
  });

  it("a public instance is read without signing in", async () => {
    a.policy((p) => p.public.push(a.fixture.instanceHash));
    const auth = session(alice);
    expect((await auth.fetch(a.url(protocolPath()))).status).to.equal(200);
    expect(auth.signIns).to.equal(0);
    // The other instances still need a sign-in.
    const other = await rejection(session(null).fetch(a.url(`/instances/${sha256Hex("x")}/protocol`)));
    expect(other.code).to.equal("AUTH_REQUIRED");
  });
});
