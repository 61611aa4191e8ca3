import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type HexHash } from "../chain/hash";
import { isStatetrailError, StatetrailError } from "../errors";
import { readIdentity, type IdentityRecord } from "../identity/record";
import { normalizeFingerprint } from "../net/pinned-fetch";
import { type ProtocolHead } from "../protocol/schema";
import { type Home } from "../store/home";
import { createApp, type AppOptions, type StatetrailApp } from "./app";
import { timelineMount, type TimelineOptions } from "./timeline";

export interface ServerOptions extends AppOptions {
  /** Interface to listen on (default: identity.json `host`, else 127.0.0.1). */
  host?: string;
  /** Port (default: identity.json `port`, else 8443); 0 picks a free one. */
  port?: number;
  /** A connection that has not completed its TLS handshake by then is closed (default 10 s; Node's is 120 s). */
  handshakeTimeoutMs?: number;
  /** Certificate and key PEM (default: the files named in identity.json, relative to the data directory). */
  certPem?: string | Buffer;
  keyPem?: string | Buffer;
  /** Serves the timeline page at `/` (timeline/index.ts); `true` without server-side verification. */
  timeline?: TimelineOptions | boolean;
}

export interface RunningServer {
  /** https://host:port of the listening server (the real port when 0 was asked for). */
  url: string;
  host: string;
  port: number;
  /** SHA-256 fingerprint of the certificate being served. */
  fingerprint: HexHash;
  server: https.Server;
  app: StatetrailApp;
  /** In-process hook for a tracker in the same process: streams what a new head counts to SSE subscribers. */
  notify: (head: ProtocolHead) => void;
  /** Ends SSE streams, closes every connection and stops listening. Idempotent. */
  close: () => Promise<void>;
}

function tryIdentity(home: Home): IdentityRecord | undefined {
  try {
    return readIdentity(home);
  } catch (error) {
    if (isStatetrailError(error, "IDENTITY_MISSING")) return undefined;
    throw error;
  }
}

function readPem(home: Home, relative: string, what: string): Buffer {
  const file = home.path(relative);
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new StatetrailError("CERT_INVALID", `cannot read the ${what} (${file}): ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * What to do when the port is taken. The identity's URL (in its ENS `url` record and every protocol) names its
 * port: another port only works once the registration says so, so that is the only other way offered.
 */
export function portInUseHint(port: number, identity: IdentityRecord | undefined): string {
  if (!identity || identity.port !== port) return `stop the process listening on port ${port}, or choose another port`;
  return (
    `another process listens on port ${port}, the port of the registered URL ${identity.url} (another ` +
    `\`statetrail serve\`?): stop it. Serving on another port breaks every verification until the registration ` +
    `names it: statetrail identity init --force --host ${identity.host} --port <new port>` +
    (identity.ens_name === null
      ? ""
      : identity.ens_name.endsWith(".test")
        ? ` --ens-label ${identity.ens_name.slice(0, -".test".length)}`
        : ` --ens-name ${identity.ens_name}`)
  );
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "localhost";
  return net.isIPv6(host) ? `[${host}]` : host;
}

/** Starts the issuer's HTTPS server with its registered certificate. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { home } = options;
  const identity = options.certPem === undefined || options.keyPem === undefined ? tryIdentity(home) : undefined;
  let cert = options.certPem;
  let key = options.keyPem;
  if (cert === undefined || key === undefined) {
    if (!identity) {
      throw new StatetrailError("IDENTITY_MISSING", `no certificate given and no identity in ${home.root}`, {
        hint: "create one with: statetrail identity init",
      });
    }
    cert ??= readPem(home, identity.certificate, "certificate");
    key ??= readPem(home, identity.certificate_key, "certificate key");
  }

  let fingerprint: HexHash;
  try {
    fingerprint = normalizeFingerprint(new X509Certificate(cert).fingerprint256);
  } catch (error) {
    throw new StatetrailError("CERT_INVALID", `the server certificate is not a valid PEM certificate`, {
      cause: error,
    });
  }

  const host = options.host ?? identity?.host ?? "127.0.0.1";
  const port = options.port ?? identity?.port ?? 8443;
  const timeline = options.timeline === true ? {} : options.timeline || undefined;
  const app = createApp(timeline ? { ...options, mount: timelineMount(home, timeline, options.mount) } : options);

  let server: https.Server;
  try {
    server = https.createServer(
      { cert, key, minVersion: "TLSv1.2", handshakeTimeout: options.handshakeTimeoutMs ?? 10_000 },
      app,
    );
  } catch (error) {
    throw new StatetrailError("CERT_INVALID", `certificate and key can't be used: ${(error as Error).message}`, {
      cause: error,
    });
  }
  // Slow-loris limits for request heads; SSE responses are long-lived but their requests are not.
  server.headersTimeout = 15_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  // A client that fails the handshake (or pins another certificate) must not crash or log noise.
  server.on("tlsClientError", () => undefined);
  // Requests Node's HTTP parser refuses (unknown method, malformed request line or header, oversized head, head
  // too slow) never reach the app: they get the API's JSON error form too, then the connection is closed.
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    const busy = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
    // Only HTTP parser errors get an answer; anything else (a TLS handshake time-out is reported here too, on a
    // socket that can't carry an answer) is cut at once.
    const http = error.code?.startsWith("HPE_") === true || error.code === "ERR_HTTP_REQUEST_TIMEOUT";
    if (!http || !socket.writable || busy) return void socket.destroy();
    const [status, reason, message] =
      error.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large", "request head too large"]
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout", "request head not received in time"]
          : [400, "Bad Request", "malformed request"];
    const body = JSON.stringify({ error: { code: "INVALID_ARGUMENT", message } });
    setTimeout(() => socket.destroy(), 1_000).unref(); // a peer that doesn't read can't keep it
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      reject(
        new StatetrailError("INVALID_ARGUMENT", `cannot listen on ${host}:${port}: ${error.code ?? error.message}`, {
          cause: error,
          hint: error.code === "EADDRINUSE" ? portInUseHint(port, identity) : undefined,
        }),
      );
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.removeListener("error", onError);
      resolve();
    });
  });

  const address = server.address();
  const realPort = typeof address === "object" && address ? address.port : port;
  const url = `https://${urlHost(host)}:${realPort}`;
  // Sign-in messages name the server's origin: the identity's URL's, else (no identity, tests) where it listens.
  app.access.origin ??= new URL(url).origin;
  let closing: Promise<void> | undefined;

  return {
    url,
    host,
    port: realPort,
    fingerprint,
    server,
    app,
    notify: (head) => app.events.notify(head),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        app.events.close();
        server.close(() => resolve());
        server.closeIdleConnections();
        // Streams just ended; anything still open after a moment is cut.
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 100).unref();
      });
      return closing;
    },
  };
}
