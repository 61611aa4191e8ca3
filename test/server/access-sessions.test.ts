import { expect } from "chai";
import { Wallet } from "ethers";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Request } from "express";
import { isStatetrailError } from "../../src/errors";
import { buildSignInMessage, checkSignIn, parseSignInChallenge, signInChallenge } from "../../src/identity/siwe";
import { AccessControl, tokenOf } from "../../src/server/access";
import { Home } from "../../src/store/home";

const ORIGIN = "https://issuer.example:8443";
const DOMAIN = "issuer.example:8443";

/** The nonce and session stores with a clock of the test's own (no waiting). */
describe("server: sign-in nonces and sessions (bounded, single-use, expiring)", function () {
  this.timeout(20_000);
  let root: string;
  let clock: number;
  const wallet = Wallet.createRandom();

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-sessions-"));
    clock = Date.parse("2026-12-04T12:00:00.000Z");
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const control = (options: { maxNonces?: number; maxSessions?: number } = {}) =>
    new AccessControl(
      new Home(root),
      { origin: ORIGIN, chainId: 31337, now: () => new Date(clock), ...options },
      async () => undefined,
      () => undefined,
    );

  const signed = async (nonce: string, expiresInMs = 600_000, signer: Wallet | typeof wallet = wallet) => {
    const message = buildSignInMessage({
      domain: DOMAIN,
      address: wallet.address,
      uri: ORIGIN,
      chainId: 31337,
      nonce,
      issuedAt: new Date(clock),
      expirationTime: new Date(clock + expiresInMs),
    });
    return { message, signature: await signer.signMessage(message) };
  };

  const refusedFor = (fn: () => unknown): string => {
    try {
      fn();
    } catch (error) {
      expect(isStatetrailError(error, "AUTH_INVALID"), String(error)).to.equal(true);
      return (error as Error).message;
    }
    throw new Error("not refused");
  };

  const requestWith = (token: string) => ({ headers: { authorization: `Bearer ${token}` } }) as unknown as Request;

  it("a nonce signs in once; a refused attempt does not use it up", async () => {
    const access = control();
    const { nonce, expires } = access.issueNonce();
    expect(nonce).to.match(/^[0-9a-f]{32}$/);
    expect(Date.parse(expires) - clock).to.equal(5 * 60_000);
    const good = await signed(nonce);
    const forged = { ...good, signature: await Wallet.createRandom().signMessage(good.message) };
    expect(refusedFor(() => access.signIn(forged.message, forged.signature))).to.match(/not by/);
    const session = access.signIn(good.message, good.signature);
    expect(session.address).to.equal(wallet.address);
    expect(refusedFor(() => access.signIn(good.message, good.signature))).to.match(/nonce/);
  });

  it("a nonce expires after 5 minutes", async () => {
    const access = control();
    const { nonce } = access.issueNonce();
    clock += 5 * 60_000 + 1;
    const late = await signed(nonce);
    expect(refusedFor(() => access.signIn(late.message, late.signature))).to.match(/nonce/);
  });

  it("at most maxNonces are outstanding: the oldest is dropped", async () => {
    const access = control({ maxNonces: 3 });
    const nonces = [1, 2, 3, 4].map(() => access.issueNonce().nonce);
    const oldest = await signed(nonces[0]);
    expect(refusedFor(() => access.signIn(oldest.message, oldest.signature))).to.match(/nonce/);
    for (const nonce of nonces.slice(1)) {
      const ok = await signed(nonce);
      expect(access.signIn(ok.message, ok.signature).address).to.equal(wallet.address);
    }
  });

  it("a session ends at the message's expiration time; at most maxSessions are kept", async () => {
    const access = control({ maxSessions: 2 });
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { message, signature } = await signed(access.issueNonce().nonce, 120_000);
      const result = access.signIn(message, signature);
      expect(Date.parse(result.expires)).to.equal(clock + 120_000);
      expect(Buffer.from(result.token, "base64url")).to.have.length(32);
      tokens.push(result.token);
    }
    expect(access.sessionOf(requestWith(tokens[0]))).to.equal(null); // dropped: the oldest
    expect(access.sessionOf(requestWith(tokens[1]))?.address).to.equal(wallet.address);
    expect(access.sessionOf(requestWith(tokens[2]))?.address).to.equal(wallet.address);
    clock += 120_000;
    expect(access.sessionOf(requestWith(tokens[2]))).to.equal(null);
  });

  it("a server that doesn't know its chain lets no one sign in", async () => {
    const access = new AccessControl(
      new Home(root),
      { origin: ORIGIN },
      async () => undefined,
      () => undefined,
    );
    const { message, signature } = await signed(access.issueNonce().nonce);
    expect(refusedFor(() => access.signIn(message, signature))).to.match(/origin or chain/);
  });

  it("tokens come from the Authorization header, else the session cookie; anything else is no token", () => {
    const token = "A".repeat(43);
    const req = (headers: Record<string, string>) => ({ headers }) as unknown as Request;
    expect(tokenOf(req({ authorization: `Bearer ${token}` }))).to.equal(token);
    expect(tokenOf(req({ authorization: `bearer  ${token} ` }))).to.equal(token);
    expect(tokenOf(req({ cookie: `a=b; statetrail_session=${token}; c=d` }))).to.equal(token);
    expect(tokenOf(req({ authorization: `Basic ${token}`, cookie: `statetrail_session=${token}` }))).to.equal(
      undefined,
    );
    expect(tokenOf(req({ cookie: "statetrail_session=not/a token" }))).to.equal(undefined);
    expect(tokenOf(req({}))).to.equal(undefined);
  });

  it("checkSignIn: notBefore in the future, another scheme, a message that isn't one", async () => {
    const expect_ = { domain: DOMAIN, origin: ORIGIN, chainId: 31337, now: new Date(clock) };
    const { message, signature } = await signed("abcdef0123456789");
    expect(checkSignIn(message, signature, expect_).address).to.equal(wallet.address);
    const notBefore = message + `\nNot Before: ${new Date(clock + 60_000).toISOString()}`;
    expect(
      refusedFor(() => checkSignIn(notBefore, signature, expect_)), // refused before the signature is looked at
    ).to.match(/not valid before/);
    const http = "http://" + message;
    expect(refusedFor(() => checkSignIn(http, signature, expect_))).to.match(/scheme http/);
    expect(refusedFor(() => checkSignIn("hello", signature, expect_))).to.match(/not an EIP-4361 message/);
    expect(refusedFor(() => checkSignIn("x".repeat(5000), signature, expect_))).to.match(/longer/);
  });

  it("the WWW-Authenticate challenge reads back", () => {
    expect(parseSignInChallenge(signInChallenge(ORIGIN))).to.deep.equal({ realm: ORIGIN, nonceUri: "/auth/nonce" });
    expect(parseSignInChallenge('Bearer realm="x"')).to.equal(undefined);
  });
});
