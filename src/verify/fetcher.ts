import { StatetrailError } from "../errors";
import { pinnedFetch, type PinnedResponse } from "../net/pinned-fetch";
import { type SignInSession } from "./auth";
import { type Fetched, type Fetcher, type ServerCertificate } from "./types";

/**
 * The real fetcher: HTTPS through {@link pinnedFetch}, capturing the server certificate; redirects refused. With
 * `request.auth`, a server asking to sign in (401 SIWE) is signed in to and asked once more (auth.ts). Connections
 * are kept and reused (`reuse`: keep-alive) by later requests to the same origin with the same pin only: a
 * verification's requests after the first are pinned (FetchSession), so they share the connections checked against
 * that pin, instead of a TLS handshake each; the certificate returned is the one of the connection each came over.
 */
export const pinnedFetcher: Fetcher = async (url, request) => {
  const options = {
    fingerprint: request.fingerprint,
    maxBytes: request.maxBytes,
    timeoutMs: request.timeoutMs,
    reuse: true,
  };
  return fetchedOf(url, request.auth ? request.auth.fetch(url, options) : pinnedFetch(url, options));
};

/**
 * What {@link pinnedFetcher} makes of the answer to its GET of `url`: the body and the certificate of the connection
 * it came over; SERVER_UNREACHABLE for a connection that could not be made; FETCH_FAILED for a status other than 2xx.
 */
export async function fetchedOf(url: string, answer: Promise<PinnedResponse>): Promise<Fetched> {
  const response = await answer.catch((error: unknown) => {
    throw serverUnreachable(error, url) ?? error;
  });
  if (response.status < 200 || response.status >= 300) {
    throw new StatetrailError("FETCH_FAILED", `GET ${url}: HTTP ${response.status} (redirects are not followed)`);
  }
  const { fingerprint, notBefore, notAfter, der, subject } = response.certificate;
  return { bytes: response.body, certificate: { fingerprint, notBefore, notAfter, der, subject } };
}

/**
 * One verification's view of the web: the first certificate an origin presents is remembered, and every
 * later request to that origin is pinned to it, so all the bytes of one origin come from the server whose
 * certificate V3 checks.
 */
export class FetchSession {
  private readonly pins = new Map<string, ServerCertificate>();
  private allowed: string | null = null;
  /** Number of requests made, for tests and reports. */
  requests = 0;

  constructor(
    private readonly fetcher: Fetcher,
    private readonly timeoutMs: number,
    /** The auditor's sign-ins, handed to the fetcher with every request (auth.ts); null: none. */
    private readonly auth: SignInSession | null = null,
  ) {}

  /** The certificate `origin` presented, if it was fetched from over TLS. */
  certificateOf(origin: string): ServerCertificate | undefined {
    return this.pins.get(origin);
  }

  /**
   * From now on only `origin` (the issuer's) is fetched from: a hostile protocol can't make the auditor's
   * machine send requests to other hosts, such as services on its internal network.
   */
  restrictTo(origin: string): void {
    this.allowed = origin;
  }

  /** The origin last parsed and its prefix (`origin` + "/"): the next URL starting with that prefix has that origin. */
  private last: { prefix: string; origin: string } | null = null;

  /**
   * {@link originOf}, without parsing a URL that starts with the last origin parsed followed by "/" (a state body's
   * URL after another: a URL object per body was 90 of the 1,300 MB a 100,000-state verify allocated). A serialized
   * origin ("https://host[:port]") followed by "/" is the whole authority of an http(s) URL, so such a URL has that
   * origin; anything else is parsed.
   */
  private originOf(url: string): string {
    const last = this.last;
    if (last !== null && url.startsWith(last.prefix)) return last.origin;
    const origin = originOf(url);
    if (/^https?:\/\/[^/?#\\@]+$/.test(origin)) this.last = { prefix: origin + "/", origin };
    return origin;
  }

  async get(url: string, maxBytes: number): Promise<Fetched> {
    const origin = this.originOf(url);
    if (this.allowed !== null && origin !== this.allowed) {
      throw new StatetrailError("FETCH_FAILED", `refused to fetch ${url}: not on the issuer's origin ${this.allowed}`);
    }
    const pinned = this.pins.get(origin);
    this.requests += 1;
    const fetched = await this.fetcher(url, {
      maxBytes,
      timeoutMs: this.timeoutMs,
      fingerprint: pinned?.fingerprint,
      ...(this.auth ? { auth: this.auth } : {}),
    });
    if (fetched.bytes.length > maxBytes) {
      throw new StatetrailError("FETCH_FAILED", `${url} is larger than ${maxBytes} bytes`);
    }
    const certificate = fetched.certificate;
    if (!certificate && pinned) {
      // Every byte from a pinned origin comes over a connection that presented its certificate: a fetcher that
      // answers without one (a library user's own) would otherwise bypass the pin.
      throw new StatetrailError(
        "TLS_FAILED",
        `${url} was answered without a server certificate, but ${origin} presented ${pinned.fingerprint} before`,
      );
    }
    if (certificate) {
      const known = this.pins.get(origin);
      if (known && known.fingerprint !== certificate.fingerprint) {
        throw new StatetrailError(
          "TLS_FAILED",
          `${origin} presented certificate ${certificate.fingerprint}, earlier ${known.fingerprint}`,
        );
      }
      if (!known) this.pins.set(origin, certificate);
    }
    return fetched;
  }
}

/** `scheme://host[:port]` of a URL, or INVALID_ARGUMENT. */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a URL: "${url}"`, { cause: error });
  }
}

/**
 * SERVER_UNREACHABLE for a connection to the issuer's server that could not be made (refused, host not found,
 * timed out before TLS), with what to do in the message itself, so that every report form (text, --json, --html,
 * watch) says it; null for anything else (TLS, HTTP status, size), which keeps its own code.
 */
export function serverUnreachable(error: unknown, url: string): StatetrailError | null {
  const message = (error as { message?: unknown })?.message;
  if (typeof message !== "string") return null;
  const refused = /^(?:cannot connect to \S+|fetching \S+ failed): (E[A-Z_]+)$/.exec(message);
  const timedOut = /^connection to \S+ timed out during the TLS handshake/.test(message);
  if (!refused && !timedOut) return null;
  const why = refused ? describeSocketError(refused[1]) : "no answer";
  let origin = url;
  try {
    origin = new URL(url).origin;
  } catch {
    // keep the URL as given
  }
  const hint =
    "is the issuer's server running? Check the URL (or the ENS name's url record); " +
    "nothing is known to be wrong with the chain or the data: nothing could be checked";
  return new StatetrailError(
    "SERVER_UNREACHABLE",
    `cannot reach the issuer's server ${origin} (${why}). ${capital(hint)}`,
    {
      hint,
      cause: error,
    },
  );
}

function describeSocketError(code: string): string {
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "host not found";
    case "ETIMEDOUT":
      return "connection timed out";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "host unreachable";
    default:
      return code;
  }
}

function capital(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
