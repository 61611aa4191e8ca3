import { constants as cryptoConstants, X509Certificate } from "node:crypto";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { type HexHash } from "../chain/hash";
import { StatetrailError, type ErrorCode } from "../errors";

/**
 * HTTPS with certificate pinning (STACK.md, "TLS and certificates"). The issuer's server presents a
 * certificate, usually self-signed, whose SHA-256 fingerprint is registered on-chain. Web PKI validation
 * says nothing about that binding, so the client connects with `rejectUnauthorized: false` and checks the
 * fingerprint itself, in the agent's `createConnection`, after the TLS handshake and BEFORE the socket is
 * handed to the HTTP layer: on a mismatch not one HTTP byte is sent.
 *
 * Without a pin the certificate is still captured and returned, so a verifier can check it against the
 * chain (V1/V3) instead of trusting it up front.
 *
 * With `reuse`, a connection is kept open after its response and used again (HTTP keep-alive) by later requests to
 * the same origin with the same pin, and only those: one agent per (origin, pin, deadline), so a socket checked
 * against one pin (or opened with none) never carries a request with another pin or none. The certificate returned
 * is always the one presented on the connection the response came over, checked when that connection was made;
 * TLS renegotiation is refused, so a connection can't present another certificate later, and a reused connection
 * is checked again (same certificate, same pin) before a request is written to it.
 */

export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 15_000;

/** The server certificate as seen on the wire. Times are Unix seconds. */
export interface PeerCertificate {
  /** SHA-256 of the DER bytes, 64 lowercase hex characters (the form registered on-chain). */
  fingerprint: HexHash;
  der: Buffer;
  notBefore: number;
  notAfter: number;
  subject: string;
  issuer: string;
}

/** An expected fingerprint (any of `ab…`, `0xAB…`, `AB:CD:…`), or a predicate deciding on the certificate. */
export type FingerprintPin = string | ((fingerprint: HexHash, certificate: PeerCertificate) => boolean);

/**
 * A failed fetch. `status` and `serverCode` are set when the server answered with an HTTP error, with the response's
 * `headers` (a 401's `WWW-Authenticate` challenge) and the `certificate` of the connection it came over.
 */
export class FetchError extends StatetrailError {
  readonly status?: number;
  readonly serverCode?: string;
  readonly headers?: http.IncomingHttpHeaders;
  readonly certificate?: PeerCertificate;

  constructor(
    code: Extract<ErrorCode, "FETCH_FAILED" | "TLS_FAILED">,
    message: string,
    options: {
      status?: number;
      serverCode?: string;
      cause?: unknown;
      hint?: string;
      headers?: http.IncomingHttpHeaders;
      certificate?: PeerCertificate;
    } = {},
  ) {
    super(code, message, { cause: options.cause, hint: options.hint });
    this.name = "FetchError";
    this.status = options.status;
    this.serverCode = options.serverCode;
    this.headers = options.headers;
    this.certificate = options.certificate;
  }
}

/** `AB:CD:…`, `0xabcd…` or `abcd…` → 64 lowercase hex characters; INVALID_ARGUMENT otherwise. */
export function normalizeFingerprint(value: string): HexHash {
  const bare = value.trim().replace(/^0x/i, "").replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(bare)) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a SHA-256 certificate fingerprint: "${value}"`);
  }
  return bare;
}

/** Reads the peer certificate of an established TLS socket. */
export function peerCertificateOf(socket: tls.TLSSocket): PeerCertificate {
  const peer = socket.getPeerCertificate(false);
  if (!peer || !peer.raw || peer.raw.length === 0) {
    throw new FetchError("TLS_FAILED", "the server presented no certificate");
  }
  const x509 = new X509Certificate(peer.raw);
  return {
    fingerprint: normalizeFingerprint(peer.fingerprint256),
    der: Buffer.from(peer.raw),
    notBefore: Math.floor(Date.parse(x509.validFrom) / 1000),
    notAfter: Math.floor(Date.parse(x509.validTo) / 1000),
    subject: x509.subject,
    issuer: x509.issuer,
  };
}

type CompiledPin = ((fingerprint: HexHash, certificate: PeerCertificate) => boolean) | undefined;

function compilePin(pin: FingerprintPin | undefined): { check: CompiledPin; describe: string } {
  if (pin === undefined) return { check: undefined, describe: "none" };
  if (typeof pin === "function") return { check: pin, describe: "a custom check" };
  const expected = normalizeFingerprint(pin);
  return { check: (fingerprint) => fingerprint === expected, describe: expected };
}

/** What a {@link PinnedAgent} checked on a socket it made: the certificate presented, and the agent (its pin). */
const checkedSockets = new WeakMap<Duplex, { agent: PinnedAgent; certificate: PeerCertificate }>();

/** Why a request was refused a pooled connection before a byte was written to it (read by {@link pinnedFetch}). */
const refusedRequests = new WeakMap<http.ClientRequest, FetchError>();

/** The certificate a {@link PinnedAgent} saw, and checked against its pin, when it made `socket`; else undefined. */
export function checkedCertificateOf(socket: Duplex | null | undefined): PeerCertificate | undefined {
  return socket ? checkedSockets.get(socket)?.certificate : undefined;
}

/** Idle pooled connections are closed after this long (the demo server's keep-alive time-out is 5 s). */
export const IDLE_CONNECTION_MS = 4_000;
/**
 * At most this many requests at a time, hence connections, per pooled agent (origin and pin); more wait for one. The
 * agent's own `maxSockets` can't bound them: it counts a connection once its handshake and pin check are done.
 * (A verify of the demo on 2 CPUs took as long with 2, 4 or 6, and longer with 1.)
 */
export const MAX_CONNECTIONS_PER_ORIGIN = 4;

/**
 * An agent that opens pinned TLS connections and remembers the certificate of the last one. By default one
 * connection per request (no keep-alive); with `keepAlive`, connections are kept for later requests through this
 * agent, which all have its pin (see {@link pinnedFetch}'s `reuse`). Never a TLS session cache: every connection
 * sees the full certificate.
 */
export class PinnedAgent extends https.Agent {
  certificate?: PeerCertificate;
  private readonly pin: ReturnType<typeof compilePin>;
  private readonly handshakeTimeoutMs: number;

  constructor(options: { fingerprint?: FingerprintPin; timeoutMs?: number; keepAlive?: boolean } = {}) {
    super(
      options.keepAlive
        ? {
            keepAlive: true,
            maxSockets: MAX_CONNECTIONS_PER_ORIGIN,
            maxFreeSockets: MAX_CONNECTIONS_PER_ORIGIN,
            timeout: IDLE_CONNECTION_MS,
            scheduling: "lifo",
            maxCachedSessions: 0,
          }
        : { keepAlive: false, maxCachedSessions: 0 },
    );
    this.pin = compilePin(options.fingerprint);
    this.handshakeTimeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * A kept connection given to `request`: written to only if this agent made and checked it, and it still presents
   * the certificate it was checked with (which still passes the pin); else it is closed and the request fails with
   * TLS_FAILED before any byte is sent.
   */
  override reuseSocket(socket: Duplex, request: http.ClientRequest): void {
    super.reuseSocket(socket as net.Socket, request);
    const refusal = this.recheck(socket);
    if (refusal) {
      refusedRequests.set(request, refusal);
      // The request is destroyed before it has the socket: its error is the socket's, the refusal.
      request.destroy(refusal);
      socket.on("error", () => undefined);
      socket.destroy(refusal);
    }
  }

  private recheck(socket: Duplex): FetchError | null {
    const checked = checkedSockets.get(socket);
    if (!checked || checked.agent !== this) {
      return new FetchError("TLS_FAILED", "a kept connection was not made and checked by this request's agent");
    }
    const peer = (socket as tls.TLSSocket).getPeerCertificate?.(false);
    const now = peer?.fingerprint256 ? normalizeFingerprint(peer.fingerprint256) : undefined;
    if (now !== checked.certificate.fingerprint) {
      return new FetchError(
        "TLS_FAILED",
        `a kept connection now presents certificate ${now ?? "(none)"}, not ${checked.certificate.fingerprint}`,
      );
    }
    if (this.pin.check && !this.pin.check(checked.certificate.fingerprint, checked.certificate)) {
      return new FetchError(
        "TLS_FAILED",
        `a kept connection has certificate ${checked.certificate.fingerprint}, expected ${this.pin.describe}`,
      );
    }
    return null;
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const host = String(options.host ?? options.hostname ?? "localhost").replace(/^\[(.*)\]$/, "$1");
    const port = Number(options.port ?? 443);
    const socket = tls.connect({
      host,
      port,
      servername: net.isIP(host) ? undefined : host,
      rejectUnauthorized: false,
      // No certificate authorities: the chain is never validated here (the pin is), and without `ca` Node loads its
      // root store into the connection's context, some 25 ms of a process's first connection (a `verify`'s).
      ca: [],
      ALPNProtocols: ["http/1.1"],
      minVersion: "TLSv1.2",
      // TLS 1.2 renegotiation could present another certificate on a connection already checked: refused.
      secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
    });
    let tcpConnected = false;
    let done = false;
    const finish = (error: Error | null): void => {
      if (done) return;
      done = true;
      socket.setTimeout(0);
      socket.removeListener("error", onError);
      if (error) {
        socket.destroy();
        // The agent wants a stream even on error; it is never used.
        callback?.(error, socket);
      } else {
        callback?.(null, socket);
      }
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      finish(
        tcpConnected
          ? new FetchError("TLS_FAILED", `TLS handshake with ${host}:${port} failed: ${error.message}`, {
              cause: error,
            })
          : new FetchError("FETCH_FAILED", `cannot connect to ${host}:${port}: ${error.code ?? error.message}`, {
              cause: error,
            }),
      );
    };
    socket.once("connect", () => (tcpConnected = true));
    socket.on("error", onError);
    socket.setTimeout(this.handshakeTimeoutMs, () =>
      finish(
        new FetchError(
          "FETCH_FAILED",
          `connection to ${host}:${port} timed out during the TLS handshake (${this.handshakeTimeoutMs} ms)`,
        ),
      ),
    );
    socket.once("secureConnect", () => {
      let certificate: PeerCertificate;
      try {
        certificate = peerCertificateOf(socket);
      } catch (error) {
        return finish(error as Error);
      }
      this.certificate = certificate;
      if (this.pin.check && !this.pin.check(certificate.fingerprint, certificate)) {
        return finish(
          new FetchError(
            "TLS_FAILED",
            `certificate of ${host}:${port} has fingerprint ${certificate.fingerprint}, expected ${this.pin.describe}`,
            { hint: "the server is not presenting the certificate registered for the issuer" },
          ),
        );
      }
      checkedSockets.set(socket, { agent: this, certificate });
      finish(null);
    });
    return undefined;
  }
}

export interface PinnedFetchOptions {
  fingerprint?: FingerprintPin;
  /** Largest body accepted (default 16 MiB); exceeding it aborts the transfer. */
  maxBytes?: number;
  /** Deadline for the whole exchange: connect, handshake, headers and body (default 15 s). */
  timeoutMs?: number;
  method?: string;
  headers?: Record<string, string>;
  /** A request body (a sign-in's JSON); sent with its Content-Length. */
  body?: string | Buffer;
  /**
   * Keep the connection open for later requests with `reuse` to the same origin with the same pin (a string or
   * none; a predicate pin never reuses), and use such a kept connection if there is one. Default: a connection of
   * its own, closed after the response. {@link closePinnedConnections} closes the kept ones.
   */
  reuse?: boolean;
}

export interface PinnedResponse {
  url: string;
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  certificate: PeerCertificate;
}

function httpsUrl(url: string | URL): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a URL: ${String(url)}`, { cause: error });
  }
  if (target.protocol !== "https:") {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `only https URLs can be fetched with a pinned certificate: ${target}`,
    );
  }
  return target;
}

/** Builds the error for an HTTP status >= 400, using the server's `{error: {code, message}}` when present. */
function httpError(
  url: string,
  status: number,
  body: Buffer,
  response: { headers?: http.IncomingHttpHeaders; certificate?: PeerCertificate; method?: string } = {},
): FetchError {
  let serverCode: string | undefined;
  let message: string | undefined;
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed?.error?.message === "string") message = parsed.error.message;
    if (typeof parsed?.error?.code === "string") serverCode = parsed.error.code;
  } catch {
    // not JSON: fall back to the status text
  }
  const detail = message ?? (http.STATUS_CODES[status] || "error");
  return new FetchError(
    "FETCH_FAILED",
    `${response.method ?? "GET"} ${url}: HTTP ${status}${serverCode ? ` ${serverCode}` : ""}: ${detail}`,
    { status, serverCode, headers: response.headers, certificate: response.certificate },
  );
}

function classify(error: unknown, url: string): StatetrailError {
  if (error instanceof StatetrailError) return error;
  const err = error as NodeJS.ErrnoException;
  return new FetchError("FETCH_FAILED", `fetching ${url} failed: ${err?.code ?? err?.message ?? String(error)}`, {
    cause: error,
  });
}

/** Requests at a time through one pooled agent: a request waits for a slot, and gives it to the next when done. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    // On the next tick: a response's connection is back in its agent's pool on the tick after its end.
    if (next) process.nextTick(next);
    else this.free += 1;
  }
}

const slotsOf = new WeakMap<PinnedAgent, Slots>();

/** Pooled agents, by origin, pin and handshake deadline (most recently used last). */
const pool = new Map<string, PinnedAgent>();
/** At most this many pooled agents: the least recently used one's idle connections are closed beyond it. */
const MAX_POOLED_AGENTS = 32;

function pooledAgent(target: URL, pin: string | undefined, timeoutMs: number): PinnedAgent {
  const key = `${target.origin} ${pin === undefined ? "unpinned" : normalizeFingerprint(pin)} ${timeoutMs}`;
  let agent = pool.get(key);
  if (agent) {
    pool.delete(key);
  } else {
    agent = new PinnedAgent({ fingerprint: pin, timeoutMs, keepAlive: true });
    slotsOf.set(agent, new Slots(MAX_CONNECTIONS_PER_ORIGIN));
    if (pool.size >= MAX_POOLED_AGENTS) {
      const [oldest, retired] = pool.entries().next().value as [string, PinnedAgent];
      pool.delete(oldest);
      retire(retired);
    }
  }
  pool.set(key, agent);
  return agent;
}

/** Closes an agent's idle connections; those in use are kept after their response until idle for a while. */
function retire(agent: PinnedAgent): void {
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
}

/**
 * Closes every connection kept by {@link pinnedFetch}'s `reuse` (the CLI at the end of a command, a benchmark between
 * runs). Requests in flight on them fail; idle kept connections never hold the process open anyway.
 */
export function closePinnedConnections(): void {
  for (const agent of pool.values()) agent.destroy();
  pool.clear();
}

/** Number of connections kept open now by {@link pinnedFetch}'s `reuse` (tests). */
export function keptConnections(): number {
  let count = 0;
  for (const agent of pool.values()) {
    for (const sockets of Object.values(agent.freeSockets)) count += sockets?.length ?? 0;
  }
  return count;
}

/** A kept connection the server had closed by the time the request went out: the request is made once more. */
class StaleConnection extends Error {
  constructor(readonly failure: StatetrailError) {
    super(failure.message);
  }
}

/**
 * Fetches an https URL over a pinned connection. Redirects are not followed (a 3xx is returned as is).
 * Rejects with TLS_FAILED (pin mismatch, handshake) or FETCH_FAILED (connection, timeout, size, HTTP >= 400).
 */
export async function pinnedFetch(url: string | URL, options: PinnedFetchOptions = {}): Promise<PinnedResponse> {
  const target = httpsUrl(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!options.reuse || typeof options.fingerprint === "function") {
    const agent = new PinnedAgent({ fingerprint: options.fingerprint, timeoutMs });
    return fetchOnce(target, options, agent).finally(() => agent.destroy());
  }
  const method = (options.method ?? "GET").toUpperCase();
  for (let attempt = 1; ; attempt++) {
    const agent = pooledAgent(target, options.fingerprint, timeoutMs);
    const slots = slotsOf.get(agent)!;
    await slots.acquire();
    try {
      return await fetchOnce(target, options, agent);
    } catch (error) {
      if (!(error instanceof StaleConnection)) throw error;
      // Only a request that can be repeated is; each kept connection tried at most once, then a new one.
      if (attempt > MAX_CONNECTIONS_PER_ORIGIN || (method !== "GET" && method !== "HEAD")) throw error.failure;
    } finally {
      slots.release();
    }
  }
}

/** One exchange through `agent`; rejects with a {@link StaleConnection} for a kept connection closed under it. */
function fetchOnce(target: URL, options: PinnedFetchOptions, agent: PinnedAgent): Promise<PinnedResponse> {
  const href = target.toString();
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const method = (options.method ?? "GET").toUpperCase();
  const pinned = typeof options.fingerprint === "string" ? normalizeFingerprint(options.fingerprint) : undefined;

  return new Promise<PinnedResponse>((resolve, reject) => {
    let settled = false;
    let answered = false;
    const settle = (error: StatetrailError | StaleConnection | null, response?: PinnedResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        request.destroy();
        reject(error);
      } else {
        resolve(response!);
      }
    };
    const timer = setTimeout(
      () => settle(new FetchError("FETCH_FAILED", `fetching ${href} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const tooLarge = (size: number): FetchError =>
      new FetchError("FETCH_FAILED", `response from ${href} is too large (${size} bytes, limit ${maxBytes})`);

    const payload = options.body === undefined ? undefined : Buffer.from(options.body);
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (payload) headers["content-length"] = String(payload.length);
    const request = https.request(target, { method, agent, headers }, (response) => {
      answered = true;
      const status = response.statusCode ?? 0;
      // The certificate of the connection this response came over, checked (against the pin) when it was made.
      const certificate = checkedCertificateOf(response.socket);
      if (!certificate) return settle(new FetchError("TLS_FAILED", `no certificate was captured for ${href}`));
      if (pinned !== undefined && certificate.fingerprint !== pinned) {
        return settle(
          new FetchError("TLS_FAILED", `${href} answered over certificate ${certificate.fingerprint}, not ${pinned}`),
        );
      }
      const declared = Number(response.headers["content-length"]);
      if (Number.isFinite(declared) && declared > maxBytes) return settle(tooLarge(declared));
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) return settle(tooLarge(size));
        chunks.push(chunk);
      });
      response.on("error", (error) => settle(classify(error, href)));
      response.on("end", () => {
        const body = Buffer.concat(chunks);
        if (status >= 400) {
          return settle(httpError(href, status, body, { headers: response.headers, certificate, method }));
        }
        settle(null, { url: href, status, headers: response.headers, body, certificate });
      });
      response.on("close", () => {
        if (!response.complete) settle(new FetchError("FETCH_FAILED", `connection to ${href} closed mid-response`));
      });
    });
    request.on("error", (error: NodeJS.ErrnoException) => {
      const refused = refusedRequests.get(request);
      if (refused) return settle(refused);
      const failure = classify(error, href);
      // A kept connection the server closed meanwhile (its keep-alive time-out, a restart): nothing was answered.
      const stale =
        request.reusedSocket &&
        !answered &&
        (error.code === "ECONNRESET" || error.code === "EPIPE" || error.code === "ECONNABORTED");
      settle(stale ? new StaleConnection(failure) : failure);
    });
    request.end(payload);
  });
}

/** One Server-Sent Event. `type` is the `event:` field ("message" when absent). */
export interface SseEvent {
  type: string;
  data: string;
  id?: string;
}

export interface SseSubscribeOptions {
  fingerprint?: FingerprintPin;
  onEvent: (event: SseEvent) => void;
  /** Called on every connection failure; `fatal` means no reconnect follows. */
  onError?: (error: StatetrailError, fatal: boolean) => void;
  /** Called each time a stream is (re)opened, with the certificate of that connection. */
  onOpen?: (certificate: PeerCertificate) => void;
  /** Resume after this event id (sent as `Last-Event-ID`). */
  lastEventId?: string;
  /** Delay before reconnecting after a drop (default 2000 ms, or the server's `retry:`); false: never reconnect. */
  reconnectMs?: number | false;
  /** Deadline for connecting and receiving the response headers (default 15 s). */
  timeoutMs?: number;
  /** Reconnect when nothing, not even a heartbeat, arrived for this long (default 45 s; 0 disables). */
  idleTimeoutMs?: number;
  /** Largest single event accepted (default 16 MiB). */
  maxEventBytes?: number;
  /** More request headers (a sign-in's `Authorization`), sent on every (re)connection. */
  headers?: Record<string, string>;
}

export interface SseSubscription {
  /** Resolves with the server certificate once the first stream is open; rejects if it never opens. */
  readonly ready: Promise<PeerCertificate>;
  /** The id of the last event received (what a reconnect resumes from). */
  readonly lastEventId: string | undefined;
  readonly closed: boolean;
  close(): void;
}

/** Incremental parser of the `text/event-stream` format (WHATWG HTML, "server-sent events"). */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private type = "";
  private size = 0;
  lastEventId: string | undefined;
  retryMs: number | undefined;

  constructor(
    private readonly emit: (event: SseEvent) => void,
    private readonly maxEventBytes = DEFAULT_MAX_BYTES,
    lastEventId?: string,
  ) {
    this.lastEventId = lastEventId;
  }

  push(text: string): void {
    this.buffer += text;
    this.size += text.length;
    if (this.size > this.maxEventBytes) {
      throw new FetchError("FETCH_FAILED", `server-sent event larger than ${this.maxEventBytes} bytes`);
    }
    for (;;) {
      const match = /[\r\n]/.exec(this.buffer);
      if (!match) break;
      const index = match.index;
      // A lone CR at the end may be the first half of CRLF: wait for the next chunk.
      if (this.buffer[index] === "\r" && index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, index);
      const skip = this.buffer[index] === "\r" && this.buffer[index + 1] === "\n" ? 2 : 1;
      this.buffer = this.buffer.slice(index + skip);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
  }

  private dispatch(): void {
    const type = this.type || "message";
    const data = this.data;
    this.type = "";
    this.data = [];
    this.size = this.buffer.length;
    if (data.length === 0) return;
    this.emit({ type, data: data.join("\n"), id: this.lastEventId });
  }
}

/**
 * Subscribes to a Server-Sent Events stream over a pinned connection, reconnecting with `Last-Event-ID`
 * after drops. A pin mismatch, an HTTP 4xx or an invalid URL is fatal (no reconnect).
 */
export function sseSubscribe(url: string | URL, options: SseSubscribeOptions): SseSubscription {
  const target = httpsUrl(url);
  const href = target.toString();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const idleTimeoutMs = options.idleTimeoutMs ?? 45_000;
  let reconnectMs = options.reconnectMs ?? 2000;
  let lastEventId = options.lastEventId;
  let closed = false;
  let opened = false;
  let request: http.ClientRequest | undefined;
  let agent: PinnedAgent | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let connectTimer: NodeJS.Timeout | undefined;

  let resolveReady!: (certificate: PeerCertificate) => void;
  let rejectReady!: (error: StatetrailError) => void;
  const ready = new Promise<PeerCertificate>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => undefined); // observed through onError by callers that don't await it

  const teardown = (): void => {
    clearTimeout(idleTimer);
    clearTimeout(connectTimer);
    request?.destroy();
    agent?.destroy();
    request = undefined;
    agent = undefined;
  };

  // Each connection attempt has a number; events of an attempt that was already given up are ignored, so a
  // late `close` of an old stream can't schedule a second reconnect.
  let attempt = 0;

  const fail = (error: StatetrailError, fatal: boolean, from: number): void => {
    if (closed || from !== attempt) return;
    attempt += 1;
    teardown();
    const final = fatal || reconnectMs === false;
    options.onError?.(error, final);
    if (final) {
      closed = true;
      rejectReady(error);
      return;
    }
    retryTimer = setTimeout(connect, reconnectMs as number);
  };

  const armIdle = (from: number): void => {
    clearTimeout(idleTimer);
    if (idleTimeoutMs > 0) {
      idleTimer = setTimeout(
        () => fail(new FetchError("FETCH_FAILED", `no data from ${href} for ${idleTimeoutMs} ms`), false, from),
        idleTimeoutMs,
      );
    }
  };

  function connect(): void {
    if (closed) return;
    const mine = attempt;
    agent = new PinnedAgent({ fingerprint: options.fingerprint, timeoutMs });
    const headers: Record<string, string> = {
      ...options.headers,
      accept: "text/event-stream",
      "cache-control": "no-store",
    };
    if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
    const current = agent;
    connectTimer = setTimeout(
      () => fail(new FetchError("FETCH_FAILED", `connecting to ${href} timed out after ${timeoutMs} ms`), false, mine),
      timeoutMs,
    );
    request = https.request(target, { method: "GET", agent, headers }, (response) => {
      if (mine !== attempt) return void response.destroy();
      const status = response.statusCode ?? 0;
      const type = String(response.headers["content-type"] ?? "");
      if (status !== 200 || !type.startsWith("text/event-stream")) {
        // The connect deadline stays armed while the error body is read: a body trickled forever can't hang it.
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size <= 65_536) chunks.push(chunk);
        });
        response.on("end", () => {
          const error =
            status >= 400
              ? httpError(href, status, Buffer.concat(chunks), {
                  headers: response.headers,
                  certificate: current.certificate,
                })
              : new FetchError(
                  "FETCH_FAILED",
                  `${href} is not an event stream (HTTP ${status}, ${type || "no type"})`,
                  {
                    status,
                  },
                );
          fail(error, status < 500, mine);
        });
        return;
      }
      clearTimeout(connectTimer);
      const certificate = current.certificate!;
      const parser = new SseParser(
        (event) => {
          if (closed || mine !== attempt) return;
          lastEventId = event.id;
          options.onEvent(event);
        },
        options.maxEventBytes,
        lastEventId,
      );
      armIdle(mine);
      if (!opened) {
        opened = true;
        resolveReady(certificate);
      }
      options.onOpen?.(certificate);
      response.setEncoding("utf8");
      response.on("data", (text: string) => {
        if (mine !== attempt) return;
        armIdle(mine);
        try {
          parser.push(text);
        } catch (error) {
          return fail(classify(error, href), false, mine);
        }
        if (mine !== attempt) return; // onEvent closed or failed this attempt
        lastEventId = parser.lastEventId;
        if (parser.retryMs !== undefined && reconnectMs !== false) reconnectMs = parser.retryMs;
      });
      response.on("close", () => fail(new FetchError("FETCH_FAILED", `event stream ${href} closed`), false, mine));
    });
    request.on("error", (error) => {
      const coded = classify(error, href);
      // A pin mismatch or a failed handshake is an attack or a misconfiguration, not a transient failure.
      fail(coded, coded.code === "TLS_FAILED", mine);
    });
    request.end();
  }

  connect();

  return {
    ready,
    get lastEventId() {
      return lastEventId;
    },
    get closed() {
      return closed;
    },
    close() {
      if (closed) return;
      closed = true;
      attempt += 1;
      clearTimeout(retryTimer);
      teardown();
      rejectReady(new FetchError("FETCH_FAILED", `subscription to ${href} was closed before it opened`));
    },
  };
}
