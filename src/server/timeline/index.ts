import fs from "node:fs";
import path from "node:path";
import { type Express, type Request, type Response } from "express";
import { type Provider } from "ethers";
import { isHexHash, sha256Hex, type HexHash } from "../../chain/hash";
import { parseProtocol, type InstanceProtocol } from "../../protocol/schema";
import { type Home } from "../../store/home";
import { readIdentity } from "../../identity/record";
import { type TrustedSetup } from "../../verify/chain";
import { verifyProtocol } from "../../verify/pipeline";
import { type EnsReader, type Fetcher, type StepId, type VerificationReport } from "../../verify/types";
import { sendError } from "../app";

/**
 * The timeline page, mounted on the issuer's app (`startServer({timeline})`):
 *
 *   GET /                                   the page (HTML; everything else is done by timeline.js). It says that
 *                                           what it shows is the issuer's claim, with the command that checks it
 *                                           (filled in from identity.json, so it also shows without JavaScript)
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
  /**
   * The network auditors name in the command the page shows (`--network <network>`); default the identity's
   * network, else the deployment the verifier trusts (`deployments/<network>`).
   */
  network?: string;
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
  const template = fs.readFileSync(path.join(TIMELINE_DIR, "index.html"), "utf8");
  const fallbackNetwork = options.network ?? /^deployments\/(.+)$/.exec(options.verify?.trusted.source ?? "")?.[1];
  const assets: Record<string, Asset> = {
    "timeline.js": asset("timeline.js", "text/javascript; charset=utf-8"),
    "timeline.css": asset("timeline.css", "text/css; charset=utf-8"),
  };

  app.get("/", (req: Request, res: Response) => {
    const bytes = Buffer.from(renderPage(template, verifyTargetOf(home, options.network, fallbackNetwork)), "utf8");
    const page: Asset = { bytes, type: "text/html; charset=utf-8", etag: `"${sha256Hex(bytes).slice(0, 32)}"` };
    sendAsset(req, res, page, "no-cache");
  });
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

/** What an auditor needs to check this issuer's instances independently; null where it is not known. */
export interface VerifyTarget {
  network: string | null;
  ensName: string | null;
  /** The issuer's registered base URL (identity.json `url`). */
  issuerUrl: string | null;
}

function verifyTargetOf(home: Home, network: string | undefined, fallbackNetwork: string | undefined): VerifyTarget {
  try {
    const identity = readIdentity(home);
    return { network: network ?? identity.network, ensName: identity.ens_name, issuerUrl: identity.url };
  } catch {
    return { network: network ?? fallbackNetwork ?? null, ensName: null, issuerUrl: null };
  }
}

/**
 * The command that checks an instance of this issuer (or, without `instance`, every instance it lists) without
 * trusting this server: the ENS form when the issuer has a name, else the instance's protocol URL. timeline.js
 * builds the same for the instance shown.
 */
export function verifyCommand(target: VerifyTarget, instance?: string): string {
  const parts = ["npx", "statetrail", "verify"];
  if (target.ensName) {
    parts.push(shellWord(target.ensName));
    if (instance) parts.push("--instance", instance);
  } else {
    // Placeholders (<…>) stay unquoted, for the reader to replace.
    const base = target.issuerUrl ? shellWord(target.issuerUrl.replace(/\/+$/, "")) : "<this server's URL>";
    parts.push(`${base}/instances/${instance ?? "<instance hash>"}/protocol`);
  }
  parts.push("--network", target.network ? shellWord(target.network) : "<network>");
  return parts.join(" ");
}

/** What the page says under the command. */
function verifyNote(target: VerifyTarget): string {
  const which = target.ensName
    ? `This checks every instance ${target.ensName} lists; add --instance <hash> for one.`
    : "Replace <instance hash> with the instance's hash (the list is at /instances).";
  return (
    `${which} It trusts only the chain and the registry addresses of deployments/${target.network ?? "<network>"} ` +
    "in your own copy of statetrail; --rpc <url> reads the chain through an endpoint of your choice."
  );
}

/** The page with the issuer's command filled in (escaped: the page has no other markup from data). */
export function renderPage(template: string, target: VerifyTarget): string {
  const values: Record<string, string> = {
    network: target.network ?? "",
    ens_name: target.ensName ?? "",
    issuer_url: target.issuerUrl ?? "",
    verify_command: verifyCommand(target),
    verify_note: verifyNote(target),
  };
  return template.replace(/\{\{([a-z_]+)\}\}/g, (whole, key: string) =>
    Object.prototype.hasOwnProperty.call(values, key) ? escapeHtml(values[key]) : whole,
  );
}

/** A word the shell takes as it is (ENS names, URLs), else single-quoted. */
function shellWord(value: string): string {
  return /^[A-Za-z0-9._:/@%+=,~-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`;
}

function escapeHtml(value: string): string {
  const entities: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  return value.replace(/[&<>"']/g, (c) => entities[c]);
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
