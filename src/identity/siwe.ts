import { randomBytes } from "node:crypto";
import { StatetrailError } from "../errors";
import { lazy } from "../lazy";

/**
 * Sign-In with Ethereum (EIP-4361), the wire contract of docs/design/ACCESS.md: the auditor's client builds the
 * message with {@link buildSignInMessage}, the issuer's server checks it with {@link checkSignIn}. Both sides use this
 * module, so they can't disagree about the format.
 *
 * Formatting and parsing are viem's `viem/siwe` (viem is already a dependency; the `siwe` package could not be added
 * here, see ACCESS.md); the signature is checked with ethers' `verifyMessage` (EIP-191 `personal_sign`). A message is
 * accepted only in the exact form `createSiweMessage` gives its parsed fields back (viem's parser is lenient: trailing
 * text, a lower-case address or a differently written date would otherwise pass), so what was signed is exactly what
 * was checked. Both libraries are required on first use only: the CLI's start does not load them.
 */

/* eslint-disable @typescript-eslint/no-require-imports */
const viemSiwe = lazy(() => require("viem/siwe") as typeof import("viem/siwe"));
const ethers = lazy(() => require("ethers") as typeof import("ethers"));
/* eslint-enable @typescript-eslint/no-require-imports */

/** The statement the client signs (ACCESS.md). */
export const SIGN_IN_STATEMENT = "Sign in to read statetrail instance protocols.";
/** How long a nonce from `GET /auth/nonce` may be used. */
export const NONCE_TTL_MS = 5 * 60_000;
/** How far `issuedAt` may be from the server's clock, either way. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
/** The longest session a message may ask for (its `expirationTime` at most this far from now). */
export const MAX_SESSION_MS = 60 * 60_000;
/** How long the client asks for (ACCESS.md: now + 10 minutes). */
export const DEFAULT_SESSION_MS = 10 * 60_000;
/** The browser's session cookie. */
export const SESSION_COOKIE = "statetrail_session";
/** Where a client gets a nonce, as named in the `WWW-Authenticate` challenge. */
export const NONCE_PATH = "/auth/nonce";
/** Where a client posts `{message, signature}`. */
export const SIGN_IN_PATH = "/auth/siwe";
/** Longest message accepted (a real one is about 450 characters). */
export const MAX_MESSAGE_LENGTH = 4096;

export interface SignInFields {
  /** The server's host, with the port unless it is 443: {@link signInDomain} of its URL. */
  domain: string;
  /** The signer's address (checksummed in the message whatever the case given). */
  address: string;
  /** The server's origin: {@link signInOrigin} of its URL. */
  uri: string;
  chainId: number;
  nonce: string;
  issuedAt: Date | string;
  expirationTime: Date | string;
  /** Default {@link SIGN_IN_STATEMENT}. */
  statement?: string;
}

/** What a checked sign-in establishes. */
export interface SignIn {
  /** Checksummed: the address that signed. */
  address: string;
  domain: string;
  uri: string;
  chainId: number;
  nonce: string;
  issuedAt: Date;
  expirationTime: Date;
  notBefore?: Date;
  statement?: string;
}

export interface SignInExpectation {
  /** The server's host (with port unless 443), e.g. `localhost:8443`. */
  domain: string;
  /** The server's origin, e.g. `https://localhost:8443`. */
  origin: string;
  chainId: number;
  now: Date;
}

/** The EIP-4361 `domain` for a server URL: its host, with the port unless it is the scheme's default. */
export function signInDomain(url: string): string {
  return new URL(url).host;
}

/** The origin (`https://host[:port]`) of a server URL: the message's `uri`. */
export function signInOrigin(url: string): string {
  return new URL(url).origin;
}

/** A fresh nonce: 32 lowercase hex characters (128 random bits; EIP-4361 wants at least 8 alphanumerics). */
export function newNonce(): string {
  return randomBytes(16).toString("hex");
}

function toDate(value: Date | string, what: string): Date {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new StatetrailError("INVALID_ARGUMENT", `${what} is not a valid time`);
  return date;
}

/** The EIP-4361 message to sign with EIP-191 `personal_sign` (ethers `Signer.signMessage`). */
export function buildSignInMessage(fields: SignInFields): string {
  try {
    return viemSiwe.createSiweMessage({
      domain: fields.domain,
      address: ethers.getAddress(fields.address) as `0x${string}`,
      statement: fields.statement ?? SIGN_IN_STATEMENT,
      uri: fields.uri,
      version: "1",
      chainId: fields.chainId,
      nonce: fields.nonce,
      issuedAt: toDate(fields.issuedAt, "issuedAt"),
      expirationTime: toDate(fields.expirationTime, "expirationTime"),
    });
  } catch (error) {
    if (error instanceof StatetrailError) throw error;
    throw new StatetrailError("INVALID_ARGUMENT", `cannot build the sign-in message: ${firstLine(error)}`, {
      cause: error,
    });
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

function refuse(reason: string): never {
  throw new StatetrailError("AUTH_INVALID", reason, {
    hint: `sign in again: GET ${NONCE_PATH}, then POST ${SIGN_IN_PATH} a fresh message for this server and chain`,
  });
}

/**
 * Checks a sign-in message and its signature against what this server expects (ACCESS.md, sign-in step 3), except
 * the nonce's freshness, which only the server's nonce store knows: the caller consumes `nonce` afterwards. Throws
 * `AUTH_INVALID` naming the first reason it is refused.
 */
export function checkSignIn(message: unknown, signature: unknown, expect: SignInExpectation): SignIn {
  if (typeof message !== "string" || message.length === 0) refuse("no message");
  if (message.length > MAX_MESSAGE_LENGTH) refuse(`the message is longer than ${MAX_MESSAGE_LENGTH} characters`);
  if (typeof signature !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(signature)) {
    refuse("the signature is not 65 bytes of 0x-hex");
  }
  const parsed = viemSiwe.parseSiweMessage(message);
  const { domain, address, uri, version, chainId, nonce, issuedAt, expirationTime, notBefore } = parsed;
  if (!domain || !address || !uri || !version || chainId === undefined || !nonce || !issuedAt) {
    refuse("not an EIP-4361 message");
  }
  if (version !== "1") refuse(`version ${version} is not 1`);
  if (parsed.scheme !== undefined && parsed.scheme !== "https") refuse(`scheme ${parsed.scheme} is not https`);
  for (const [name, date] of [
    ["issuedAt", issuedAt],
    ["expirationTime", expirationTime],
    ["notBefore", notBefore],
  ] as const) {
    if (date !== undefined && Number.isNaN(date.getTime())) refuse(`${name} is not an RFC 3339 time`);
  }
  let canonical: string;
  try {
    canonical = viemSiwe.createSiweMessage({ ...parsed, domain, address, uri, version: "1", chainId, nonce, issuedAt });
  } catch (error) {
    refuse(`not a valid EIP-4361 message: ${firstLine(error)}`);
  }
  if (canonical !== message) {
    refuse(
      "the message is not in canonical EIP-4361 form (checksummed address, times as YYYY-MM-DDTHH:MM:SS.sssZ, " +
        "nothing after the last field)",
    );
  }
  if (domain !== expect.domain) refuse(`the message is for ${domain}, not ${expect.domain} (another site)`);
  let uriOrigin: string;
  try {
    uriOrigin = new URL(uri).origin;
  } catch {
    refuse(`URI ${uri} is not a URL`);
  }
  if (uriOrigin !== expect.origin) refuse(`the message's URI ${uri} is not on ${expect.origin} (another origin)`);
  if (chainId !== expect.chainId) refuse(`chain ID ${chainId} is not this server's chain ${expect.chainId}`);
  const now = expect.now.getTime();
  if (Math.abs(issuedAt.getTime() - now) > MAX_CLOCK_SKEW_MS) {
    refuse(`issued at ${issuedAt.toISOString()}, more than 5 minutes from the server's time`);
  }
  if (!expirationTime) refuse("the message has no expiration time (at most 1 hour ahead is accepted)");
  if (expirationTime.getTime() <= now) refuse(`the message expired at ${expirationTime.toISOString()}`);
  if (expirationTime.getTime() - now > MAX_SESSION_MS) {
    refuse(`expiration ${expirationTime.toISOString()} is more than 1 hour away`);
  }
  if (notBefore && notBefore.getTime() > now) refuse(`the message is not valid before ${notBefore.toISOString()}`);
  let signer: string;
  try {
    signer = ethers.verifyMessage(message, signature);
  } catch {
    refuse("the signature can't be recovered");
  }
  if (signer !== address) refuse(`the signature is not by ${address}`);
  return {
    address,
    domain,
    uri,
    chainId,
    nonce,
    issuedAt,
    expirationTime,
    ...(notBefore ? { notBefore } : {}),
    ...(parsed.statement !== undefined ? { statement: parsed.statement } : {}),
  };
}

/** The `WWW-Authenticate` challenge of a 401 from the server at `origin`. */
export function signInChallenge(origin: string): string {
  return `SIWE realm="${origin}", nonce_uri="${NONCE_PATH}"`;
}

/** The parameters of a `SIWE` challenge, or undefined when the header is not one. */
export function parseSignInChallenge(header: string | undefined): { realm: string; nonceUri: string } | undefined {
  if (!header) return undefined;
  const match = /^\s*SIWE\s+(.*)$/i.exec(header);
  if (!match) return undefined;
  const params = new Map<string, string>();
  for (const part of match[1].matchAll(/([a-zA-Z_]+)\s*=\s*"([^"]*)"/g)) params.set(part[1].toLowerCase(), part[2]);
  const realm = params.get("realm");
  const nonceUri = params.get("nonce_uri");
  if (realm === undefined || nonceUri === undefined) return undefined;
  return { realm, nonceUri };
}
