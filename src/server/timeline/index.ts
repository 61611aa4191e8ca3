import fs from "node:fs";
import path from "node:path";
import { type Express, type Request, type Response } from "express";
import { type Provider } from "ethers";
import { isHexHash, sha256Hex, type HexHash } from "../../chain/hash";
import { parseProtocol, type InstanceProtocol } from "../../protocol/schema";
import { type Home } from "../../store/home";
import { type TrustedSetup } from "../../verify/chain";
import { verifyProtocol } from "../../verify/pipeline";
import { type EnsReader, type Fetcher, type StepId, type VerificationReport } from "../../verify/types";
import { sendError } from "../app";

/**
 * The timeline page, mounted on the issuer's app (`startServer({timeline})`):
 *
 *   GET /                                   the page (static HTML; everything else is done by timeline.js)
 *   GET /assets/timeline.js, timeline.css   its script and styles (same origin: the CSP allows nothing else)
 *   GET /models                             published models: hash, size, ASL Comment, number of states
 *   GET /instances/<hash>/verification      the verifier's report on this server's own published protocol,
 *                                           computed with the server's chain connection (503 without one)
 *
 * The page reads the JSON API of app.ts (/.well-known/statetrail.json, /instances, /instances/<h>/protocol,
 * /states/<h>) and follows /instances/<h>/events. The verification is what an auditor's `statetrail verify`
 * does, over TLS to this very server; it is cached per protocol version for `cacheMs` and at most two run
 * at once.
 */

export const TIMELINE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const TIMELINE_DIR = __dirname;

export interface TimelineVerifier {
  provider: Provider;
  /** The chain id and registries to trust (the server's own deployment). */
  trusted: TrustedSetup;
  /** ENS reads for V2; null or absent: V2 skipped (and then optional). */
  ens?: EnsReader | null;
  optional?: readonly StepId[];
  /** How URLs are read (default: pinned HTTPS). */
  fetcher?: Fetcher;
}

export interface TimelineOptions {
  /** Chain access for `/instances/<h>/verification`; without it that route answers 503. */
  verify?: TimelineVerifier;
  /** How long a report is reused while the protocol is unchanged (default 10 s). */
  cacheMs?: number;
}

interface Asset {
  bytes: Buffer;
  type: string;
  etag: string;
}

function asset(file: string, type: string): Asset {
  const bytes = fs.readFileSync(path.join(TIMELINE_DIR, file));
  return { bytes, type, etag: `"${sha256Hex(bytes).slice(0, 32)}"` };
}

function sendAsset(req: Request, res: Response, item: Asset, cacheControl: string): void {
  res.set({ "Content-Security-Policy": TIMELINE_CSP, "Cache-Control": cacheControl, ETag: item.etag });
  if (req.headers["if-none-match"] === item.etag) {
    res.status(304).end();
    return;
  }
  res.type(item.type).send(item.bytes);
}

/** A mount hook that adds the timeline routes, then runs `next` (another mount hook) if given. */
export function timelineMount(
  home: Home,
  options: TimelineOptions = {},
  next?: (app: Express) => void,
): (app: Express) => void {
  return (app) => {
    mountTimeline(app, home, options);
    next?.(app);
  };
}

interface ModelRow {
  model_hash: HexHash;
  bytes: number;
  comment: string | null;
  states: number;
}

export function mountTimeline(app: Express, home: Home, options: TimelineOptions = {}): void {
  const page = asset("index.html", "text/html; charset=utf-8");
  const assets: Record<string, Asset> = {
    "timeline.js": asset("timeline.js", "text/javascript; charset=utf-8"),
    "timeline.css": asset("timeline.css", "text/css; charset=utf-8"),
  };

  app.get("/", (req: Request, res: Response) => sendAsset(req, res, page, "no-cache"));
  app.get("/assets/:name", (req: Request, res: Response) => {
    const name = String(req.params.name);
    const item = Object.prototype.hasOwnProperty.call(assets, name) ? assets[name] : undefined;
    if (!item) return sendError(res, 404, "NOT_FOUND", "no such asset");
    sendAsset(req, res, item, "no-cache");
  });

  const models = new Map<HexHash, { stamp: string; row: ModelRow }>();
  app.get("/models", async (_req: Request, res: Response) => {
    const rows: ModelRow[] = [];
    for (const hash of home.listModels().filter(isHexHash)) {
      const file = home.modelFile(hash);
      let stat: fs.Stats;
      try {
        stat = await fs.promises.stat(file);
      } catch {
        continue;
      }
      const stamp = `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
      const cached = models.get(hash);
      if (cached && cached.stamp === stamp) {
        rows.push(cached.row);
        continue;
      }
      const bytes = await fs.promises.readFile(file);
      if (sha256Hex(bytes) !== hash) continue; // corrupt: refused at its own URL, left out of the list
      let comment: string | null = null;
      let states = 0;
      try {
        const asl = JSON.parse(bytes.toString("utf8")) as { Comment?: unknown; States?: unknown };
        comment = typeof asl.Comment === "string" ? asl.Comment : null;
        states = asl.States && typeof asl.States === "object" ? Object.keys(asl.States).length : 0;
      } catch {
        // published bytes are what they are; the list shows no comment
      }
      const row = { model_hash: hash, bytes: bytes.length, comment, states };
      models.set(hash, { stamp, row });
      rows.push(row);
    }
    rows.sort((a, b) => a.model_hash.localeCompare(b.model_hash));
    res.set("Cache-Control", "no-store").type("application/json").send(JSON.stringify(rows));
  });

  const verifier = options.verify;
  const cacheMs = options.cacheMs ?? 10_000;
  const reports = new Map<HexHash, { stamp: string; at: number; report: Promise<VerificationReport> }>();
  const limiter = new Limiter(2);

  app.get("/instances/:hash/verification", async (req: Request, res: Response) => {
    const hash = req.params.hash;
    if (typeof hash !== "string" || !isHexHash(hash)) {
      return sendError(res, 400, "INVALID_ARGUMENT", "instance hash must be 64 lowercase hex characters (SHA-256)");
    }
    if (!verifier) {
      return sendError(res, 503, "VERIFY_INCOMPLETE", "this server has no chain connection to verify with");
    }
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(home.protocolFile(hash));
    } catch {
      return sendError(res, 404, "NOT_FOUND", `instance ${hash} is not published here`);
    }
    const stamp = `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    let cached = reports.get(hash);
    if (!cached || cached.stamp !== stamp || Date.now() - cached.at > cacheMs) {
      let protocol: InstanceProtocol;
      try {
        protocol = parseProtocol(await fs.promises.readFile(home.protocolFile(hash), "utf8"));
      } catch (error) {
        return sendError(
          res,
          500,
          "INTERNAL",
          `stored protocol of instance ${hash} is not valid: ${(error as Error).message}`,
        );
      }
      const url = `${protocol.issuer.url.replace(/\/+$/, "")}/instances/${hash}/protocol`;
      const report = limiter.run(() =>
        verifyProtocol({
          input: { url },
          provider: verifier.provider,
          trusted: verifier.trusted,
          ens: verifier.ens ?? null,
          optional: verifier.optional ?? (verifier.ens ? [] : ["V2"]),
          fetcher: verifier.fetcher,
        }),
      );
      cached = { stamp, at: Date.now(), report };
      reports.set(hash, cached);
      report.catch(() => reports.delete(hash));
    }
    const report = await cached.report;
    res.set("Cache-Control", "no-store").type("application/json").send(JSON.stringify(report));
  });
}

/** Runs at most `max` tasks at once, the rest in arrival order. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active += 1;
    try {
      return await task();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }
}
