import fs from "node:fs";
import path from "node:path";
import { type Express, type Request, type Response } from "express";
import { type Provider } from "ethers";
import { isHexHash, sha256Hex, type HexHash } from "../../chain/hash";
import { decodePage, pageCount, type DecodedPage } from "../../protocol/pages";
import { parseHead, type ProtocolHead } from "../../protocol/schema";
import { type Home } from "../../store/home";
import { readIdentity } from "../../identity/record";
import { type TrustedSetup } from "../../verify/chain";
import { verifyProtocol } from "../../verify/pipeline";
import { type EnsReader, type Fetcher, type StepId, type VerificationReport } from "../../verify/types";
import { type ListAccess } from "../access";
import { sendError } from "../app";

/**
 * The timeline page, mounted on the issuer's app (`startServer({timeline})`):
 *
 *   GET /                                   the page (HTML; everything else is done by timeline.js). It says that
 *                                           what it shows is the issuer's claim, with the command that checks it
 *                                           (filled in from identity.json, so it also shows without JavaScript)
 *   GET /instances/<hash>/timeline[?page=k] one instance's page: rendered from its head (instance, issuer, status,
 *                                           entry count, the instance's command) and ONE page of entries (the
 *                                           latest, or `k`), with links to the other pages, so that it reads
 *                                           without JavaScript too; timeline.js takes over and pages on demand
 *   GET /assets/timeline.js, timeline.css   its script and styles (same origin: the CSP allows nothing else)
 *   GET /models                             published models: hash, size, ASL Comment, number of states
 *   GET /instances/<hash>/verification      the verifier's report on this server's own published protocol,
 *                                           computed with the server's chain connection (503 without one)
 *
 * The page reads the JSON API of app.ts (/.well-known/statetrail.json, /instances, /instances/<h>/protocol (the
 * head), /instances/<h>/protocol/pages/<k>, /states/<h>) and follows /instances/<h>/events. Nothing here holds a
 * whole protocol: the server side reads a head and at most one page per request, the browser the pages it shows. The verification is what an auditor's `statetrail verify`
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
  app.get("/instances/:hash/timeline", async (req: Request, res: Response) => {
    const hash = req.params.hash;
    if (typeof hash !== "string" || !isHexHash(hash)) {
      return sendError(res, 400, "INVALID_ARGUMENT", "instance hash must be 64 lowercase hex characters (SHA-256)");
    }
    const target = verifyTargetOf(home, options.network, fallbackNetwork);
    const view = await instanceViewOf(home, hash, req.query.page);
    const html = renderPage(template, target, view);
    const bytes = Buffer.from(html, "utf8");
    const page: Asset = { bytes, type: "text/html; charset=utf-8", etag: `"${sha256Hex(bytes).slice(0, 32)}"` };
    if (view.status !== 200) {
      res.status(view.status);
      res.set({ "Content-Security-Policy": TIMELINE_CSP, "Cache-Control": "no-store" });
      res.type(page.type).send(page.bytes);
      return;
    }
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
    // Mode private: only the models the caller may read (src/server/access.ts).
    const access = res.locals.access as ListAccess | undefined;
    for (const hash of home.listModels().filter(isHexHash)) {
      if (access && !(await access.mayReadModel(hash))) continue;
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
      let protocol: ProtocolHead;
      try {
        protocol = parseHead(await fs.promises.readFile(home.protocolFile(hash)));
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

/**
 * The page with the issuer's command filled in (escaped). With `instance`, one instance's view: the command names it
 * and its issuer (as its head says), and `instance.html` (built by {@link instanceHtml}, every value escaped) takes
 * the place of the page's `<!--instance-view-->` marker.
 */
export function renderPage(template: string, target: VerifyTarget, instance?: InstanceView): string {
  const shown: VerifyTarget = instance?.head
    ? { network: target.network, ensName: instance.head.issuer.ens_name, issuerUrl: instance.head.issuer.url }
    : target;
  const values: Record<string, string> = {
    network: target.network ?? "",
    ens_name: target.ensName ?? "",
    issuer_url: target.issuerUrl ?? "",
    instance: instance?.hash ?? "",
    verify_command: instance?.head ? verifyCommand(shown, instance.hash) : verifyCommand(target),
    verify_note: instance?.head ? instanceNote(target) : verifyNote(target),
  };
  const filled = template.replace(/\{\{([a-z_]+)\}\}/g, (whole, key: string) =>
    Object.prototype.hasOwnProperty.call(values, key) ? escapeHtml(values[key]) : whole,
  );
  // After the placeholders: nothing in the instance's HTML is taken for a placeholder.
  return instance ? filled.replace("<!--instance-view-->", () => instanceHtml(instance, target)) : filled;
}

/** The note under an instance's command. */
function instanceNote(target: VerifyTarget): string {
  return (
    `It trusts only the chain and the registry addresses of deployments/${target.network ?? "<network>"} ` +
    "in your own copy of statetrail; --rpc <url> reads the chain through an endpoint of your choice."
  );
}

/** What the server renders of one instance: its head and one page (never more), or why not. */
export interface InstanceView {
  hash: HexHash;
  status: 200 | 400 | 404 | 500;
  head: ProtocolHead | null;
  /** The page shown, its index and the number of pages; null when it could not be read. */
  page: { index: number; count: number; entries: DecodedPage["entries"] } | null;
  problem: string | null;
}

/**
 * Reads the head of `hash` and one page: `page` (a query value: an index, or "latest"/absent for the last page).
 * The page is read as the issuer's server stores it: this is a rendering of the issuer's claim, not a check (the
 * page's header supplies the accumulator it starts from).
 */
export async function instanceViewOf(home: Home, hash: HexHash, page: unknown): Promise<InstanceView> {
  let head: ProtocolHead;
  try {
    head = parseHead(await fs.promises.readFile(home.protocolFile(hash)));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    return {
      hash,
      status: missing ? 404 : 500,
      head: null,
      page: null,
      problem: missing ? `Instance ${hash} is not published here.` : `The stored head of ${hash} is not valid.`,
    };
  }
  const count = pageCount(head.entries, head.page_size);
  let index = count - 1;
  if (typeof page === "string" && page !== "" && page !== "latest") {
    if (!/^\d{1,9}$/.test(page) || Number(page) >= count) {
      return { hash, status: 400, head, page: null, problem: `There is no page ${page}: pages are 0 to ${count - 1}.` };
    }
    index = Number(page);
  }
  // An instance without states may have no page file yet: nothing to read.
  if (head.entries === 0) return { hash, status: 200, head, page: { index, count, entries: [] }, problem: null };
  try {
    const bytes = await fs.promises.readFile(home.pageFile(hash, index));
    const newline = bytes.indexOf(0x0a);
    const header = JSON.parse(bytes.subarray(0, newline < 0 ? bytes.length : newline).toString("utf8")) as {
      accumulator_before?: unknown;
    };
    const decoded = decodePage(bytes, {
      instanceHash: hash,
      index,
      accumulatorBefore: String(header.accumulator_before),
      wanted: Math.max(0, Math.min(head.page_size, head.entries - index * head.page_size)),
    });
    return { hash, status: 200, head, page: { index, count, entries: decoded.entries }, problem: null };
  } catch (error) {
    return {
      hash,
      status: 200,
      head,
      page: null,
      problem: `Page ${index + 1} (pages/${index}) could not be read: ${(error as Error).message}`,
    };
  }
}

/**
 * The instance's server-rendered view: head and one page, every value escaped, links to the other pages that work
 * without JavaScript. timeline.js replaces it with its live, paged view.
 */
export function instanceHtml(view: InstanceView, target: VerifyTarget): string {
  const e = escapeHtml;
  const parts: string[] = [
    `<section id="instance-static" data-instance="${e(view.hash)}">`,
    `<nav class="crumbs"><a href="/">← issuer and instances</a></nav>`,
    `<h2>Instance <code class="hash">${e(view.hash)}</code></h2>`,
  ];
  const head = view.head;
  if (!head) {
    parts.push(`<p class="status-failed">${e(view.problem ?? "Not available.")}</p></section>`);
    return parts.join("\n");
  }
  const rows: [string, string][] = [
    [
      "status",
      `<span id="static-status" class="instance-status status-${e(head.status)}" data-status="${e(head.status)}">${e(head.status)}</span>`,
    ],
    ["states", `<span id="static-count" data-count="${head.entries}">${head.entries}</span>`],
    ["issuer", `<code>${e(head.issuer.address)}</code>`],
    ["ENS name", head.issuer.ens_name ? e(head.issuer.ens_name) : `<span class="muted">none</span>`],
    ["server", `<code>${e(head.issuer.url)}</code>`],
    ["model", `<code class="hash">${e(head.model_hash)}</code>`],
    ["chain", String(head.chain_id) + (target.network ? ` (${e(target.network)})` : "")],
    ["created in block", String(head.created.block_nr)],
    ["pages", `${pageCount(head.entries, head.page_size)} of ${head.page_size} states each`],
  ];
  parts.push(`<dl class="meta">${rows.map(([k, v]) => `<dt>${e(k)}</dt><dd>${v}</dd>`).join("")}</dl>`);
  if (view.problem) parts.push(`<p class="status-failed">${e(view.problem)}</p>`);
  const page = view.page;
  if (page) {
    const first = page.index * head.page_size;
    const link = (index: number, label: string, rel: string): string =>
      `<a href="?page=${index}" rel="${rel}" data-page-link="${index}">${e(label)}</a>`;
    const nav: string[] = [];
    if (page.index > 0) nav.push(link(0, "first page", "first"), link(page.index - 1, "← older", "prev"));
    nav.push(
      `<span class="pager-position">page ${page.index + 1} of ${page.count}` +
        (page.entries.length > 0 ? `, states #${first}–#${first + page.entries.length - 1}` : "") +
        `</span>`,
    );
    if (page.index < page.count - 1) {
      nav.push(link(page.index + 1, "newer →", "next"), link(page.count - 1, "latest page", "last"));
    }
    parts.push(`<nav class="pager" id="static-pager">${nav.join(" ")}</nav>`);
    if (page.entries.length === 0) {
      parts.push(`<p class="muted">No state has been registered yet.</p>`);
    } else {
      parts.push(
        `<ol class="timeline" id="static-timeline" start="${first}">` +
          page.entries
            .map((entry) => {
              const end = entry.state_type.startsWith("Execution");
              return (
                `<li class="state type-${e(entry.state_type)}${end ? " end" : ""}" data-seq="${entry.seq}" data-state-hash="${e(entry.state_hash)}">` +
                `<div class="state-main"><span class="seq">#${entry.seq}</span> <span class="state-name">${e(end ? "end of execution" : entry.state_name)}</span> ` +
                `<span class="state-type">${e(entry.state_type)}</span></div>` +
                `<div class="state-meta"><span>block ${entry.block_nr}</span> <time>${e(isoTime(entry.timestamp))}</time> ` +
                `<span>tx <code>${e(entry.transaction_hash)}</code></span> <span>hash <code class="hash">${e(entry.state_hash)}</code></span></div></li>`
              );
            })
            .join("") +
          `</ol>`,
      );
    }
  }
  parts.push(
    `<p class="muted">The entries as this server publishes them: <a href="/instances/${e(view.hash)}/protocol">head</a>` +
      (page ? `, <a href="/instances/${e(view.hash)}/protocol/pages/${page.index}">this page</a>` : "") +
      `. The issuer's claim: check it with the command above.</p>`,
    `</section>`,
  );
  return parts.join("\n");
}

function isoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isFinite(date.getTime()) ? date.toISOString().replace(".000Z", "Z") : `invalid time (${seconds})`;
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
