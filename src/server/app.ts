import fs from "node:fs";
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import { z } from "zod";
import { isHexHash, sha256Hex, type HexHash } from "../chain/hash";
import { isStatetrailError, type ErrorCode } from "../errors";
import { readIdentity, type IdentityRecord } from "../identity/record";
import {
  addressSchema,
  hexHashSchema,
  parseHead,
  registriesSchema,
  type ProtocolHead,
  type Registries,
} from "../protocol/schema";
import { discloseOnly, readInputDocument, REDACTED_INPUT_DOCUMENT } from "../protocol/disclosure";
import { disclosesExecutionInput } from "../store/access";
import { type Home } from "../store/home";
import { AccessControl, disclosureOf, instanceOfStateDocument, type AccessOptions, type ListAccess } from "./access";
import { parseLastEventId, SseHub, type EventStreamOptions } from "./sse";
import { SIGN_IN_PATH } from "../identity/siwe";

/**
 * The issuer's HTTPS API. Read-only, and everything it serves comes from the data directory:
 *
 *   GET /.well-known/statetrail.json     who this server speaks for (issuer, chain, registries, certificate)
 *   GET /models/<hash>                   exact model bytes          (content-addressed, immutable)
 *   GET /states/<hash>                   the state document: its data line (content-addressed: SHA-256 of the
 *                                        line is the hash) and the disclosures of the fields the caller may see
 *   GET /instances/<hash>/input          the input document: the execution input's disclosure, or nothing when
 *                                        the caller may see neither `input` nor `context` (never the raw input)
 *   GET /instances/<hash>/protocol       the signed head of the instance protocol (no-cache, ETag)
 *   GET /instances/<hash>/protocol/pages/<k>  page k of its entries, JSON lines (a full page: immutable; the open
 *                                        page: no-cache; both with an ETag)
 *   GET /instances/<hash>/events         Server-Sent Events (sse.ts), from Last-Event-ID or ?after=<seq> on
 *   GET /instances                       summaries, newest first
 *   GET /auth/nonce, POST /auth/siwe     Sign-In with Ethereum (access.ts; the one route that takes a body)
 *
 * With an access policy in mode private (access.json, docs/design/ACCESS.md) every data route above needs a session
 * with a grant, unless the instance is public: 401 AUTH_REQUIRED, 403 GRANT_MISSING (access.ts). A grant may be
 * limited to some data fields (selective disclosure, issue 17): the state and input documents then carry only those
 * fields' disclosures (`res.locals.disclosure`, set by access.ts; a route that finds none discloses nothing).
 *
 * Names in URLs are only ever 64 lowercase hex characters, checked before any file is touched, so no path
 * can reach outside the store. Content-addressed bytes are re-hashed before they are sent: a corrupt store
 * answers 500, never wrong bytes. Errors are JSON: `{"error": {"code", "message"}}`. A protocol is never loaded
 * whole: the head is constant-size, a page at most `page_size` lines, whatever the length of the instance.
 */

/** `GET /.well-known/statetrail.json` */
export const wellKnownSchema = z.object({
  statetrail: z.literal(1),
  issuer: addressSchema,
  chain_id: z.number().int().positive(),
  registries: registriesSchema,
  ens_name: z.string().nullable(),
  certificate_fingerprint: hexHashSchema,
  url: z.string(),
});
export type WellKnownDocument = z.infer<typeof wellKnownSchema>;

/** What the well-known document is built from. Without `identity`, identity.json is read on each request. */
export interface WellKnownSource {
  registries: Registries;
  identity?: IdentityRecord;
}

export function buildWellKnown(identity: IdentityRecord, registries: Registries): WellKnownDocument {
  return {
    statetrail: 1,
    issuer: identity.address,
    chain_id: identity.chain_id,
    registries,
    ens_name: identity.ens_name,
    certificate_fingerprint: identity.certificate_fingerprint,
    url: identity.url,
  };
}

/** One row of `GET /instances`. */
export interface InstanceSummary {
  instance_hash: HexHash;
  model_hash: HexHash;
  status: ProtocolHead["status"];
  states: number;
  head: ProtocolHead["head"];
  created_block: number;
}

export interface AppOptions {
  home: Home;
  /** Enables `/.well-known/statetrail.json`; without it that route answers 404. */
  wellKnown?: WellKnownSource;
  events?: EventStreamOptions;
  /** Adds routes (e.g. a timeline page) before the 404 and error handlers. */
  mount?: (app: Express) => void;
  /** Where server-side problems (corrupt store, internal errors) are reported; default stderr. */
  log?: (message: string) => void;
  /** Sign-in settings (origin, chain id; default from the identity). The policy itself is the home's access.json. */
  access?: AccessOptions;
}

/**
 * The express app plus its SSE hub. The tracker's in-process hook is `app.events.notify(protocol)`
 * (`app.notify` is taken: express routes the HTTP NOTIFY method with it).
 */
export type StatetrailApp = Express & { events: SseHub; access: AccessControl };

/** Error codes in HTTP error bodies: the product's codes plus two that only HTTP has. */
export type HttpErrorCode = ErrorCode | "METHOD_NOT_ALLOWED" | "TOO_MANY_CLIENTS";

const IMMUTABLE = "public, max-age=31536000, immutable";
/** State and input documents, and pages: JSON lines. */
const JSON_LINES = "application/jsonl; charset=utf-8";
const JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export function sendError(res: Response, status: number, code: HttpErrorCode, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res
    .status(status)
    .set("Cache-Control", "no-store")
    .type("application/json")
    .send(JSON.stringify({ error: { code, message } })); // express leaves the body out for HEAD
}

/** The route parameter as a wire hash, or a 400 answered and undefined. */
function hashParam(req: Request, res: Response, what: string): HexHash | undefined {
  const value = req.params.hash;
  if (typeof value === "string" && isHexHash(value)) return value;
  sendError(res, 400, "INVALID_ARGUMENT", `${what} must be 64 lowercase hex characters (SHA-256)`);
  return undefined;
}

async function readOrUndefined(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.promises.readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
}

function sendJsonBytes(res: Response, bytes: Buffer, cacheControl: string, etag?: string): void {
  res.set("Cache-Control", cacheControl);
  if (etag) res.set("ETag", `"${etag}"`);
  res.type("application/json").send(bytes);
}

/**
 * Whether `If-None-Match` names `etag` (a list of entity tags or `*`; the weak comparison RFC 9110 prescribes for it,
 * so `W/"x"` matches `"x"`).
 */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === `"${etag}"`);
}

/**
 * Sends bytes with a strong ETag (their SHA-256) and `cacheControl`, or 304 Not Modified when the client's
 * `If-None-Match` already names them.
 */
function sendConditional(req: Request, res: Response, bytes: Buffer, cacheControl: string, type: string): void {
  const etag = sha256Hex(bytes);
  res.set("Cache-Control", cacheControl);
  res.set("ETag", `"${etag}"`);
  if (etagMatches(req.headers["if-none-match"], etag)) {
    res.status(304).end();
    return;
  }
  res.type(type).send(bytes);
}

/** A page index in a URL: a decimal integer without sign or leading zero, below a billion. */
const PAGE_INDEX = /^(0|[1-9][0-9]{0,8})$/;

/** Reads and validates a stored head; undefined if absent, throws a 500-worthy message if corrupt. */
async function loadHead(home: Home, instance: HexHash): Promise<{ bytes: Buffer; head: ProtocolHead } | undefined> {
  const bytes = await readOrUndefined(home.protocolFile(instance));
  if (!bytes) return undefined;
  let head: ProtocolHead;
  try {
    head = parseHead(bytes);
  } catch (error) {
    throw new CorruptStore(`stored protocol head of instance ${instance} is not valid: ${(error as Error).message}`);
  }
  if (head.instance_hash !== instance) {
    throw new CorruptStore(`stored protocol under ${instance} is for instance ${head.instance_hash}`);
  }
  return { bytes, head };
}

class CorruptStore extends Error {}

/**
 * {@link loadHead} answered from memory while the file is unchanged (same inode, size and modification time: the
 * tracker replaces it by rename, so every update is a new inode). Under load the head is one stat per request instead
 * of a read and a schema check. A head is constant-size, so the cache is bounded by its entry limit.
 */
class HeadCache {
  private readonly entries = new Map<HexHash, { stamp: string; loaded: { bytes: Buffer; head: ProtocolHead } }>();

  constructor(
    private readonly home: Home,
    private readonly limit = 1024,
  ) {}

  async get(instance: HexHash): Promise<{ bytes: Buffer; head: ProtocolHead } | undefined> {
    let stamp: string;
    try {
      const stat = await fs.promises.stat(this.home.protocolFile(instance), { bigint: true });
      stamp = `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw error;
    }
    const hit = this.entries.get(instance);
    if (hit && hit.stamp === stamp) return hit.loaded;
    // Replaced between the stat and the read: cached under the older stamp, so the next request reads again.
    const loaded = await loadHead(this.home, instance);
    this.entries.delete(instance);
    if (!loaded) return undefined;
    this.entries.set(instance, { stamp, loaded });
    if (this.entries.size > this.limit) this.entries.delete(this.entries.keys().next().value as HexHash);
    return loaded;
  }
}

export function createApp(options: AppOptions): StatetrailApp {
  const { home } = options;
  const log = options.log ?? ((message: string) => process.stderr.write(`statetrail server: ${message}\n`));
  const hub = new SseHub(home, options.events);
  const heads = new HeadCache(home);
  const app = express() as StatetrailApp;
  app.events = hub;
  const identity = options.wellKnown?.identity ?? identityOrUndefined(home);
  const access = new AccessControl(
    home,
    {
      ...options.access,
      origin: options.access?.origin ?? (identity ? new URL(identity.url).origin : undefined),
      chainId: options.access?.chainId ?? identity?.chain_id,
    },
    async (instance) => (await heads.get(instance))?.head,
    log,
  );
  app.access = access;

  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("case sensitive routing", true);
  app.set("strict routing", true);

  // Security headers on every answer, including errors.
  app.use((_req: Request, res: Response, next: NextFunction) => {
    res.set({
      "X-Content-Type-Options": "nosniff",
      "Content-Security-Policy": JSON_CSP,
      "Referrer-Policy": "no-referrer",
      "X-Frame-Options": "DENY",
      // Public, read-only data: auditors' browser tools may read it from any origin.
      "Access-Control-Allow-Origin": "*",
      "Cross-Origin-Resource-Policy": "cross-origin",
    });
    next();
  });

  // Read-only: GET and HEAD, and no request bodies (none is ever read), except the sign-in's POST (access.ts).
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (req.method === "POST" && req.path === SIGN_IN_PATH) return next();
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.set({ Allow: "GET, HEAD", Connection: "close" });
      return sendError(res, 405, "METHOD_NOT_ALLOWED", `${req.method} is not allowed: this server is read-only`);
    }
    const length = req.headers["content-length"];
    if (req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0")) {
      res.set("Connection", "close");
      return sendError(res, 400, "INVALID_ARGUMENT", "request bodies are not accepted");
    }
    next();
  });

  // Sign-in routes, then the check in front of every data route (ACCESS.md).
  access.mountRoutes(app);
  app.use(access.middleware());

  app.get("/.well-known/statetrail.json", (_req: Request, res: Response) => {
    if (!options.wellKnown) return sendError(res, 404, "NOT_FOUND", "this server has no well-known document");
    let identity: IdentityRecord;
    try {
      identity = options.wellKnown.identity ?? readIdentity(home);
    } catch (error) {
      if (isStatetrailError(error, "IDENTITY_MISSING")) return sendError(res, 404, "IDENTITY_MISSING", error.message);
      throw error;
    }
    const body = Buffer.from(JSON.stringify(buildWellKnown(identity, options.wellKnown.registries), null, 2) + "\n");
    sendJsonBytes(res, body, "no-cache", sha256Hex(body));
  });

  const contentRoute = (what: string, fileOf: (hash: HexHash) => string) => async (req: Request, res: Response) => {
    const hash = hashParam(req, res, `${what} hash`);
    if (!hash) return;
    const bytes = await readOrUndefined(fileOf(hash));
    if (!bytes) return sendError(res, 404, "NOT_FOUND", `${what} ${hash} is not published here`);
    if (sha256Hex(bytes) !== hash) {
      log(`stored ${what} ${hash} does not match its hash`);
      return sendError(res, 500, "INTERNAL", `stored ${what} ${hash} does not match its hash; refusing to serve it`);
    }
    sendJsonBytes(res, bytes, IMMUTABLE, hash);
  };
  app.get(
    "/models/:hash",
    contentRoute("model", (hash) => home.modelFile(hash)),
  );

  // A state document (disclosure.ts): the data line, content-addressed, then only the disclosures of the fields
  // this caller may see. The ETag is the hash of the bytes served, so callers who see different fields never share
  // one; private answers are `private, no-store` (access.ts), public and open ones immutable like the other content.
  app.get("/states/:hash", async (req: Request, res: Response) => {
    const hash = hashParam(req, res, "state hash");
    if (!hash) return;
    const document = await readOrUndefined(home.stateFile(hash));
    if (!document) return sendError(res, 404, "NOT_FOUND", `state ${hash} is not published here`);
    const newline = document.indexOf(0x0a);
    if (newline < 0 || sha256Hex(document.subarray(0, newline)) !== hash) {
      log(`stored state ${hash} does not match its hash`);
      return sendError(res, 500, "INTERNAL", `stored state ${hash} does not match its hash; refusing to serve it`);
    }
    const disclosure = disclosureOf(res);
    if (disclosure.instance !== undefined) {
      // Decided for the instance the data named when the policy was applied: still the one it names now.
      let instance: unknown;
      try {
        instance = instanceOfStateDocument(document);
      } catch {
        instance = undefined;
      }
      if (instance !== disclosure.instance) {
        log(`stored state ${hash} names another instance than it did when access to it was decided`);
        return sendError(res, 500, "INTERNAL", `stored state ${hash} changed while it was read; refusing to serve it`);
      }
    }
    sendConditional(req, res, discloseOnly(document, disclosure.fields), IMMUTABLE, JSON_LINES);
  });

  app.get("/instances/:hash/input", async (req: Request, res: Response) => {
    const hash = hashParam(req, res, "instance hash");
    if (!hash) return;
    // The input document only: the raw input file (home.inputFile) is the tracker's, never served.
    const document = await readOrUndefined(home.inputDocumentFile(hash));
    if (!document) return sendError(res, 404, "NOT_FOUND", `no input for instance ${hash}`);
    const head = (await heads.get(hash))?.head;
    if (head) {
      // The instance hash commits to the input through input_digest: a document that doesn't match it is corrupt.
      try {
        readInputDocument(document, head.input_digest);
      } catch (error) {
        log(`stored input document of instance ${hash} is not valid: ${(error as Error).message}`);
        return sendError(res, 500, "INTERNAL", `stored input of instance ${hash} is not valid; refusing to serve it`);
      }
    }
    const disclosed = disclosesExecutionInput(disclosureOf(res).fields);
    sendConditional(req, res, disclosed ? document : REDACTED_INPUT_DOCUMENT, IMMUTABLE, JSON_LINES);
  });

  app.get("/instances/:hash/protocol", async (req: Request, res: Response) => {
    const hash = hashParam(req, res, "instance hash");
    if (!hash) return;
    const loaded = await heads.get(hash);
    if (!loaded) return sendError(res, 404, "NOT_FOUND", `instance ${hash} is not published here`);
    // Revalidated on every use (it changes as the run grows), cheaply: 304 while unchanged.
    sendConditional(req, res, loaded.bytes, "no-cache", "application/json");
  });

  app.get("/instances/:hash/protocol/pages/:index", async (req: Request, res: Response) => {
    const hash = hashParam(req, res, "instance hash");
    if (!hash) return;
    const text = req.params.index;
    if (typeof text !== "string" || !PAGE_INDEX.test(text)) {
      return sendError(
        res,
        400,
        "INVALID_ARGUMENT",
        "page index must be a decimal integer without sign or leading zero (0, 1, 2, …)",
      );
    }
    const index = Number(text);
    const loaded = await heads.get(hash);
    if (!loaded) return sendError(res, 404, "NOT_FOUND", `instance ${hash} is not published here`);
    // Whole lines only: the tracker may be appending to the open page right now.
    const page = await home.readServablePage(hash, index);
    if (!page) return sendError(res, 404, "NOT_FOUND", `instance ${hash} has no page ${index}`);
    // A page that holds page_size entries, all counted by the signed head (so written and synced before it), is
    // closed: the tracker never writes to it again, and a resume rebuilds it byte for byte.
    const closed =
      page.lines - 1 >= loaded.head.page_size && loaded.head.entries >= (index + 1) * loaded.head.page_size;
    sendConditional(req, res, page.bytes, closed ? IMMUTABLE : "no-cache", "application/jsonl");
  });

  app.get("/instances/:hash/events", async (req: Request, res: Response) => {
    const hash = hashParam(req, res, "instance hash");
    if (!hash) return;
    let lastSeq: number | undefined;
    try {
      // Last-Event-ID (a reconnecting EventSource), else `?after=<seq>`: a browser can't set the header on its first
      // connection, and the timeline page starts from the head's last seq instead of having every entry replayed.
      const after = typeof req.query.after === "string" ? req.query.after : undefined;
      lastSeq = parseLastEventId(req.headers["last-event-id"] ?? after);
    } catch (error) {
      return sendError(res, 400, "INVALID_ARGUMENT", (error as Error).message);
    }
    const loaded = await heads.get(hash);
    if (!loaded) return sendError(res, 404, "NOT_FOUND", `instance ${hash} is not published here`);
    if (!hub.canAccept()) {
      res.set("Retry-After", "10");
      return sendError(res, 503, "TOO_MANY_CLIENTS", `too many event subscribers (limit ${hub.maxClients})`);
    }
    if (req.method === "HEAD") {
      res.status(200).set("Cache-Control", "no-store").type("text/event-stream").end();
      return;
    }
    hub.subscribe(req, res, loaded.head, lastSeq ?? -1);
  });

  const summaries = new Map<HexHash, { stamp: string; summary: InstanceSummary; mtimeMs: number }>();
  app.get("/instances", async (_req: Request, res: Response) => {
    const rows: { summary: InstanceSummary; mtimeMs: number }[] = [];
    // Mode private: only what the caller may read (access.ts leaves the rule here).
    const allowed = (res.locals.access as ListAccess | undefined)?.mayReadInstance ?? (() => true);
    for (const instance of home.listInstances()) {
      const file = home.protocolFile(instance);
      let stat: fs.Stats;
      try {
        stat = await fs.promises.stat(file);
      } catch {
        continue;
      }
      const stamp = `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
      const cached = summaries.get(instance);
      if (cached && cached.stamp === stamp) {
        if (allowed(instance, cached.summary.model_hash)) rows.push(cached);
        continue;
      }
      let loaded: Awaited<ReturnType<typeof loadHead>>;
      try {
        loaded = await loadHead(home, instance);
      } catch {
        continue; // a corrupt head is refused at its own URL; the list just leaves it out
      }
      if (!loaded) continue;
      const { head } = loaded;
      const row = {
        stamp,
        mtimeMs: stat.mtimeMs,
        summary: {
          instance_hash: head.instance_hash,
          model_hash: head.model_hash,
          status: head.status,
          states: head.entries,
          head: head.head,
          created_block: head.created.block_nr,
        },
      };
      summaries.set(instance, row);
      if (allowed(instance, row.summary.model_hash)) rows.push(row);
    }
    rows.sort(
      (a, b) =>
        b.summary.created_block - a.summary.created_block ||
        b.mtimeMs - a.mtimeMs ||
        a.summary.instance_hash.localeCompare(b.summary.instance_hash),
    );
    sendJsonBytes(res, Buffer.from(JSON.stringify(rows.map((row) => row.summary))), "no-store");
  });

  options.mount?.(app);

  // Anything else under a hash-named collection has a malformed name (e.g. `../x`, `%2e%2e`, uppercase).
  app.get(["/models/*rest", "/states/*rest"], (_req: Request, res: Response) =>
    sendError(res, 400, "INVALID_ARGUMENT", "hash must be 64 lowercase hex characters (SHA-256)"),
  );
  app.get("/instances/*rest", (req: Request, res: Response) => {
    const [first] = (req.params as unknown as { rest: string[] }).rest;
    if (first !== undefined && isHexHash(first)) return sendError(res, 404, "NOT_FOUND", `no such resource`);
    sendError(res, 400, "INVALID_ARGUMENT", "instance hash must be 64 lowercase hex characters (SHA-256)");
  });

  app.use((_req: Request, res: Response) => sendError(res, 404, "NOT_FOUND", "no such resource"));

  // Last: turn anything thrown into a JSON error that reveals no file system paths.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = (error as { status?: unknown }).status;
    if (typeof status === "number" && status >= 400 && status < 500) {
      return sendError(res, status, "INVALID_ARGUMENT", "malformed request");
    }
    if (error instanceof CorruptStore) {
      log(error.message);
      return sendError(res, 500, "INTERNAL", error.message);
    }
    log(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    sendError(res, 500, "INTERNAL", "internal error");
  });

  return app;
}

function identityOrUndefined(home: Home): IdentityRecord | undefined {
  try {
    return readIdentity(home);
  } catch {
    return undefined; // no identity (or an unreadable one): sign-in needs the origin and chain given
  }
}
