import type { Signer } from "ethers";
import { type HexHash } from "../chain/hash";
import { StatetrailError, type ErrorCode } from "../errors";
import { lazy } from "../lazy";
import { FetchError, pinnedFetch, type PinnedFetchOptions, type PinnedResponse } from "../net/pinned-fetch";
import type { ChainView } from "./chain";

/*
 * Signing in to an issuer's server to read what it does not serve to anyone (docs/design/ACCESS.md, "Client"): on a
 * 401 whose `WWW-Authenticate` is a `SIWE` challenge, the auditor's key signs an EIP-4361 message for the origin that
 * was fetched, the server's bearer token is kept for that origin, and the request is made once more with it.
 *
 * Loaded with the verifier, but ethers (the signer, the development-key check) and viem's EIP-4361 formatting
 * (identity/siwe.ts) are required only when a server asks to sign in.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const siwe = lazy(() => require("../identity/siwe") as typeof import("../identity/siwe"));
const keys = lazy(() => require("../chain/keys") as typeof import("../chain/keys"));
const ethers = lazy(() => require("ethers") as typeof import("ethers"));
/* eslint-enable @typescript-eslint/no-require-imports */

/** The environment variable holding the auditor's private key (hex) when no option names another. */
export const AUDITOR_KEY_ENV = "STATETRAIL_AUDITOR_KEY";

/** How the auditor's key is given: a signer, or a function giving it on first use (a keystore decrypted then). */
export type AuditorSource = Signer | (() => Signer | Promise<Signer>);

export interface SignInOptions {
  /** The auditor's key; none: a server asking to sign in gets `AUTH_REQUIRED` (could not verify). */
  auditor?: AuditorSource | null;
  /** The chain the verification runs against (the message's `chainId`); a function is asked at the first sign-in. */
  chainId: number | (() => number | Promise<number>);
  /** Deadline of each sign-in request (default 15 s). */
  timeoutMs?: number;
  /** The clock of the message's times (ms; default Date.now). */
  now?: () => number;
  /**
   * Called before signing in to `origin`, with the certificate its server presents (what every sign-in request is
   * pinned to): throws to refuse (e.g. not the certificate the issuer asked about registered on-chain), and nothing
   * is signed or sent. See {@link SignInSession.withServerCheck}.
   */
  checkServer?: (origin: string, fingerprint: HexHash) => Promise<void>;
}

/** What every view of one session shares (withServerCheck): the tokens, the sign-ins under way and refused, the key. */
class SessionStore {
  signIns = 0;
  readonly sessions = new Map<string, AuthSession>();
  readonly pending = new Map<string, Promise<AuthSession>>();
  /** Sign-ins refused for good (a bad key, a server refusing the message): not tried again for every request. */
  readonly refused = new Map<string, StatetrailError>();
  signer: Promise<Signer> | undefined;
}

/** A session with one origin: its bearer token, until when, the address it speaks for and the certificate it is bound to. */
export interface AuthSession {
  origin: string;
  token: string;
  address: string;
  /** When the session ends (ms): the server's `expires` or the message's expiration, whichever is first. */
  expiresAt: number;
  /** The certificate of the server the token was obtained from: the token is only ever sent to that server. */
  fingerprint: HexHash;
}

/** A session is not used in its last half minute (a request would reach the server after its end). */
const EXPIRY_MARGIN_MS = 30_000;
/** Why a sign-in can't succeed by trying again (a network failure can). */
const FINAL_REFUSALS: ReadonlySet<string> = new Set([
  "AUTH_INVALID",
  "KEY_REFUSED",
  "KEYSTORE_PASSWORD",
  "INVALID_ARGUMENT",
]);
/** Largest answer of `/auth/nonce` and `/auth/siwe` read. */
const MAX_AUTH_BYTES = 64 * 1024;

const AUTH_HINT =
  `give the auditor's key: set ${AUDITOR_KEY_ENV} to its private key (hex), or use --auditor-key-env <NAME> or ` +
  "--auditor-keystore <file> (library: `auditor`); the issuer must have granted its address read access " +
  "(statetrail grant)";

/** What to ask the issuer for: a grant of the instance `url` names (else any scope), to `address`. */
function grantHint(url: string, address: string | undefined): string {
  const instance = /\/instances\/([0-9a-f]{64})(?:\/|$)/.exec(new URL(url).pathname)?.[1];
  const scope = instance ? `instance:${instance}` : "<all | instance:<hash> | model:<hash>>";
  return (
    `ask the issuer to grant ${address ?? "your auditor address"} read access ` +
    `(statetrail grant ${scope} ${address ?? "<address>"}), then verify again`
  );
}

/**
 * The auditor's sign-ins, one per origin for the life of this object (a process, for the CLI): a token obtained at an
 * origin is sent to that origin only, over a connection presenting the certificate it was obtained over, and never
 * to another; a sign-in is only ever made to the origin whose request was answered with a challenge, through the same
 * pinned TLS as the request (pinned to the certificate the challenge came over).
 */
export class SignInSession {
  private readonly now: () => number;
  private readonly store: SessionStore;
  private readonly sessions: Map<string, AuthSession>;
  private readonly pending: Map<string, Promise<AuthSession>>;
  private readonly refused: Map<string, StatetrailError>;

  constructor(
    private readonly options: SignInOptions,
    store?: SessionStore,
  ) {
    this.now = options.now ?? Date.now;
    this.store = store ?? new SessionStore();
    this.sessions = this.store.sessions;
    this.pending = this.store.pending;
    this.refused = this.store.refused;
  }

  /** Sign-ins completed (a POST /auth/siwe that gave a token), by this session and every view of it. */
  get signIns(): number {
    return this.store.signIns;
  }

  /**
   * A view of this session (the same tokens, kept and used as before) that signs in only to a server passing `check`
   * (with this session's own check, if any, first): one verification's question (the issuer asked about) decides
   * where its new sign-ins go.
   */
  withServerCheck(check: (origin: string, fingerprint: HexHash) => Promise<void>): SignInSession {
    const own = this.options.checkServer;
    return new SignInSession(
      {
        ...this.options,
        checkServer: async (origin, fingerprint) => {
          await own?.(origin, fingerprint);
          await check(origin, fingerprint);
        },
      },
      this.store,
    );
  }

  /** Whether an auditor key is configured (not whether it was loaded). */
  get hasAuditor(): boolean {
    return Boolean(this.options.auditor);
  }

  /** The live session with `url`'s origin, if any (and, with `fingerprint`, only if bound to that certificate). */
  sessionFor(url: string | URL, fingerprint?: string): AuthSession | undefined {
    const origin = originOfUrl(url);
    const session = this.sessions.get(origin);
    if (!session) return undefined;
    if (session.expiresAt - EXPIRY_MARGIN_MS <= this.now()) {
      this.sessions.delete(origin);
      return undefined;
    }
    if (fingerprint !== undefined && fingerprint.toLowerCase() !== session.fingerprint) return undefined;
    return session;
  }

  /**
   * The headers of a request to `url` over a connection pinned to `fingerprint`: `Authorization` when a session with
   * that origin is bound to that certificate, else none.
   */
  headersFor(url: string | URL, fingerprint: string): Record<string, string> {
    const session = this.sessionFor(url, fingerprint);
    return session ? { authorization: `Bearer ${session.token}` } : {};
  }

  /**
   * GET (or `options.method`) `url` through {@link pinnedFetch}, signing in when the server asks: with the session
   * of its origin when there is one (pinned to the session's certificate), else without; on a `SIWE` 401, sign in and
   * ask once more. Throws AUTH_REQUIRED (no key, or the server refuses even a fresh session), AUTH_INVALID (the
   * sign-in was refused), GRANT_MISSING (403), KEY_REFUSED (a development key off the local chain), or what
   * pinnedFetch throws.
   */
  async fetch(url: string | URL, options: PinnedFetchOptions = {}): Promise<PinnedResponse> {
    const href = String(url);
    let retried = false;
    for (;;) {
      const pin = typeof options.fingerprint === "string" ? options.fingerprint : undefined;
      const session = typeof options.fingerprint === "function" ? undefined : this.sessionFor(href, pin);
      const headers = { ...options.headers, ...(session ? { authorization: `Bearer ${session.token}` } : {}) };
      try {
        return await pinnedFetch(href, {
          ...options,
          fingerprint: options.fingerprint ?? session?.fingerprint,
          headers,
        });
      } catch (error) {
        if (session && pin === undefined && error instanceof FetchError && error.code === "TLS_FAILED") {
          // The server no longer presents the certificate the token was obtained over: the token is not sent to it;
          // the request is made without it (and signs in again if the server asks).
          this.forget(session);
          continue;
        }
        if (retried && isChallenge(error)) {
          throw new StatetrailError(
            "AUTH_REQUIRED",
            `the issuer's server asks to sign in again right after a sign-in it accepted (${(error as Error).message})`,
            { hint: "the server does not accept its own sessions: report it to the issuer", cause: error },
          );
        }
        await this.answer(href, error, session);
        retried = true;
      }
    }
  }

  /**
   * What to do about `error`, the failure of a request to `url` made with `used` (the session whose token it carried,
   * if any): resolves once a session to retry with exists (a `SIWE` 401: signed in, or another request signed in
   * meanwhile); throws the error to report otherwise: GRANT_MISSING for a 403, AUTH_REQUIRED without a key, the
   * sign-in's failure, or `error` itself when it is not about access.
   */
  async answer(url: string, error: unknown, used?: AuthSession): Promise<void> {
    const failure = error as FetchError;
    if (!(failure instanceof FetchError) || failure.status === undefined) throw error;
    if (failure.status === 403) {
      const hint = grantHint(url, used?.address);
      throw new StatetrailError(
        "GRANT_MISSING",
        `the issuer's server ${originOfUrl(url)} refuses this to ${used ? used.address : "an auditor not signed in"} ` +
          `(HTTP 403${failure.serverCode ? ` ${failure.serverCode}` : ""}: no grant). To read it, ${hint}`,
        { hint, cause: error },
      );
    }
    if (failure.status !== 401) throw error;
    const challenge = siweChallenge(failure);
    if (!challenge) {
      if (failure.serverCode !== "AUTH_REQUIRED" || this.hasAuditor) throw error;
    }
    const origin = originOfUrl(url);
    if (!this.hasAuditor) {
      throw new StatetrailError(
        "AUTH_REQUIRED",
        `the issuer's server ${origin} serves this only to auditors it granted access, after signing in ` +
          `(Sign-In with Ethereum), and no auditor key is configured. To read it, ${AUTH_HINT}`,
        { hint: AUTH_HINT, cause: error },
      );
    }
    if (used) this.forget(used);
    const fingerprint = failure.certificate?.fingerprint;
    if (!fingerprint) throw error;
    await this.signInOnce(origin, challenge!.nonceUri, fingerprint);
  }

  /**
   * Signs in to `url`'s origin over connections pinned to `fingerprint` (the certificate the server just presented)
   * unless a session bound to it exists: for an answer that is not refused but depends on who asks (`Vary:
   * Authorization`, a private server's list of instances), which never challenges. Without a key, does nothing.
   */
  async signInAt(url: string, fingerprint: string): Promise<void> {
    if (!this.hasAuditor) return;
    await this.signInOnce(originOfUrl(url), siwe.NONCE_PATH, fingerprint.toLowerCase());
  }

  /** One sign-in at a time per origin: requests refused meanwhile wait for it; a final refusal is remembered. */
  private async signInOnce(origin: string, nonceUri: string, fingerprint: HexHash): Promise<void> {
    // Another request signed in meanwhile over this server's certificate: retry with its session.
    if (this.sessionFor(origin, fingerprint)) return;
    const refused = this.refused.get(origin);
    if (refused) throw refused;
    let pending = this.pending.get(origin);
    if (!pending) {
      pending = this.signIn(origin, nonceUri, fingerprint).finally(() => this.pending.delete(origin));
      this.pending.set(origin, pending);
      pending.then(
        (session) => this.sessions.set(origin, session),
        (cause: unknown) => {
          if (cause instanceof StatetrailError && FINAL_REFUSALS.has(cause.code)) this.refused.set(origin, cause);
        },
      );
    }
    await pending;
  }

  /** Drops `session` (expired, or refused by its server); a newer session of the same origin is kept. */
  forget(session: AuthSession): void {
    if (this.sessions.get(session.origin) === session) this.sessions.delete(session.origin);
  }

  /**
   * The auditor's private key (hex), to open an encrypted mirror copy (verify/mirror.ts); null when no key is
   * configured. MIRROR_KEY_REQUIRED for a signer that does not hold its key in this process (not a Wallet); like a
   * sign-in, KEY_REFUSED for a development key off the local chain.
   */
  async privateKey(): Promise<string | null> {
    if (!this.hasAuditor) return null;
    const signer = await this.auditor();
    const key = (signer as { signingKey?: { privateKey?: unknown } }).signingKey?.privateKey;
    if (typeof key !== "string") {
      throw new StatetrailError(
        "MIRROR_KEY_REQUIRED",
        "the auditor's signer does not hold its private key in this process, so it can't open an encrypted copy",
        { hint: "give the key itself: an ethers Wallet, --auditor-key-env <NAME> or --auditor-keystore <file>" },
      );
    }
    const chainId = typeof this.options.chainId === "function" ? await this.options.chainId() : this.options.chainId;
    keys.assertKeyAllowed(ethers.computeAddress(key), chainId);
    return key;
  }

  /** The auditor's signer, loaded once. */
  private auditor(): Promise<Signer> {
    const source = this.options.auditor!;
    this.store.signer ??= Promise.resolve().then(() => (typeof source === "function" ? source() : source));
    return this.store.signer;
  }

  /**
   * Signs in to `origin` over connections pinned to `fingerprint`: a nonce from the origin's own nonce URL, an
   * EIP-4361 message for that origin and the verification's chain signed with the auditor's key, POSTed to the
   * origin's `/auth/siwe`.
   */
  private async signIn(origin: string, nonceUri: string, fingerprint: HexHash): Promise<AuthSession> {
    await this.options.checkServer?.(origin, fingerprint);
    const signer = await this.auditor();
    const address = ethers.getAddress(await signer.getAddress());
    const chainId = typeof this.options.chainId === "function" ? await this.options.chainId() : this.options.chainId;
    keys.assertKeyAllowed(address, chainId);
    const timeoutMs = this.options.timeoutMs;
    // The challenge names where to get a nonce: on the origin that was fetched, nowhere else.
    let nonceUrl: URL;
    try {
      nonceUrl = new URL(nonceUri, origin);
    } catch (error) {
      throw invalid(origin, `its challenge names nonce_uri "${nonceUri}", not a URL`, error);
    }
    if (nonceUrl.origin !== origin) {
      throw invalid(
        origin,
        `its challenge asks for a nonce from ${nonceUrl.origin}, another origin: not signing in there`,
      );
    }
    const nonceAnswer = await pinnedFetch(nonceUrl, { fingerprint, timeoutMs, maxBytes: MAX_AUTH_BYTES });
    const nonce = (json(nonceAnswer.body) as { nonce?: unknown } | undefined)?.nonce;
    if (typeof nonce !== "string" || !/^[A-Za-z0-9]{8,256}$/.test(nonce)) {
      throw invalid(origin, `GET ${nonceUrl.href} gave no usable nonce (8 or more letters and digits)`);
    }
    const issuedAt = this.now();
    const expirationTime = issuedAt + siwe.DEFAULT_SESSION_MS;
    const message = siwe.buildSignInMessage({
      domain: siwe.signInDomain(origin),
      address,
      uri: siwe.signInOrigin(origin),
      chainId,
      nonce,
      issuedAt: new Date(issuedAt),
      expirationTime: new Date(expirationTime),
      statement: siwe.SIGN_IN_STATEMENT,
    });
    const signature = await signer.signMessage(message);
    const signInUrl = `${origin}${siwe.SIGN_IN_PATH}`;
    let answer: PinnedResponse;
    try {
      answer = await pinnedFetch(signInUrl, {
        method: "POST",
        fingerprint,
        timeoutMs,
        maxBytes: MAX_AUTH_BYTES,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ message, signature }),
      });
    } catch (error) {
      if (error instanceof FetchError && (error.status === 401 || error.status === 400)) {
        throw new StatetrailError(
          "AUTH_INVALID",
          `${origin} refused the sign-in of ${address} on chain ${chainId}: ${error.message}`,
          {
            hint: "check the auditor's key and that the verification's chain is the issuer's (--network / --chain-id)",
            cause: error,
          },
        );
      }
      throw error;
    }
    const body = json(answer.body) as { token?: unknown; expires?: unknown } | undefined;
    const token = body?.token;
    if (typeof token !== "string" || !/^[A-Za-z0-9._~+/=-]{16,1024}$/.test(token)) {
      throw invalid(origin, `POST ${signInUrl} gave no usable token`);
    }
    const expires = typeof body?.expires === "string" ? Date.parse(body.expires) : NaN;
    this.store.signIns += 1;
    return {
      origin,
      token,
      address,
      expiresAt: Number.isFinite(expires) ? Math.min(expires, expirationTime) : expirationTime,
      fingerprint: answer.certificate.fingerprint,
    };
  }
}

/** Whether `error` is a 401 with a `SIWE` challenge. */
function isChallenge(error: unknown): boolean {
  return error instanceof FetchError && error.status === 401 && siweChallenge(error) !== undefined;
}

function siweChallenge(error: FetchError): { realm: string; nonceUri: string } | undefined {
  const header = error.headers?.["www-authenticate"];
  const value = Array.isArray(header) ? header.find((h) => /^\s*SIWE\b/i.test(h)) : header;
  if (!value || !/^\s*SIWE\b/i.test(value)) return undefined;
  return siwe.parseSignInChallenge(value) ?? { realm: "", nonceUri: siwe.NONCE_PATH };
}

function invalid(origin: string, why: string, cause?: unknown): StatetrailError {
  return new StatetrailError("AUTH_INVALID", `signing in to ${origin} failed: ${why}`, {
    hint: "the issuer's server does not follow the sign-in contract (docs/design/ACCESS.md): report it to the issuer",
    cause,
  });
}

function json(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return undefined;
  }
}

function originOfUrl(url: string | URL): string {
  try {
    return new URL(String(url)).origin;
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a URL: "${String(url)}"`, { cause: error });
  }
}

/**
 * A {@link SignInOptions.checkServer} refusing a server whose certificate `issuer` did not register on-chain (or
 * revoked, or whose registered window does not hold `now()`, Unix seconds): the auditor's signature is not handed to
 * whoever answers at the issuer's URL before V3 could tell (an on-path server could relay it to the real one).
 * CERT_NOT_REGISTERED, CERT_REVOKED or CERT_EXPIRED, with nothing signed or sent.
 */
export function issuerCertificateCheck(
  chain: Pick<ChainView, "certificateOf">,
  issuer: string,
  now: () => Promise<number> = async () => Math.floor(Date.now() / 1000),
): (origin: string, fingerprint: HexHash) => Promise<void> {
  return async (origin, fingerprint) => {
    const record = await chain.certificateOf(fingerprint, issuer);
    const at = await now();
    const problem: [ErrorCode, string] | null =
      !record.holder || record.holder.toLowerCase() !== issuer.toLowerCase()
        ? ["CERT_NOT_REGISTERED", "is not registered on-chain for"]
        : record.revokedAt !== 0
          ? ["CERT_REVOKED", `was revoked (at ${record.revokedAt}) by`]
          : at < record.notBefore || at > record.notAfter
            ? ["CERT_EXPIRED", "is outside the validity window registered by"]
            : null;
    if (problem) {
      throw new StatetrailError(
        problem[0],
        `not signing in to ${origin}: the certificate it presents (${fingerprint}) ${problem[1]} the issuer asked ` +
          `about, ${issuer}. Nothing was signed or read: check the URL (or the ENS name's url record)`,
        { hint: "the server answering at this URL is not the issuer's: do not sign in to it" },
      );
    }
  };
}

/**
 * Sessions shared by every verification given the same signer (and chain) in this process: `verifyProtocol({auditor})`
 * called again, or a watch's verifications, sign in once per origin.
 */
const shared = new WeakMap<object, Map<number, SignInSession>>();

/**
 * The {@link SignInSession} of `auditor` on `chainId` for this process (a session given as `auditor` is used as is);
 * without an auditor a session that signs in nowhere, so that a server asking to sign in is AUTH_REQUIRED and a 403
 * GRANT_MISSING, each saying what to do.
 */
export function signInSessionFor(auditor: Signer | SignInSession | null | undefined, chainId: number): SignInSession {
  if (auditor instanceof SignInSession) return auditor;
  if (!auditor) return new SignInSession({ auditor: null, chainId });
  let byChain = shared.get(auditor);
  if (!byChain) shared.set(auditor, (byChain = new Map()));
  let session = byChain.get(chainId);
  if (!session) byChain.set(chainId, (session = new SignInSession({ auditor, chainId })));
  return session;
}
