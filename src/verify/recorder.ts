import { sha256Hex } from "../chain/hash";
import { isStatetrailError, StatetrailError } from "../errors";
import { decodePage, encodePages, headOf, pageCount } from "../protocol/pages";
import { decodeUtf8, describeIssues, safeParseBounded } from "../protocol/limits";
import {
  checkVersion,
  parseHead,
  wholeProtocolSchema,
  type InstanceProtocol,
  type ProtocolEntry,
  type ProtocolHead,
} from "../protocol/schema";
import { readStateDocument } from "../protocol/disclosure";
import { parseStrictJson } from "../protocol/strict-json";
import { contentUrls } from "../protocol/urls";
import { type ReportEvidence, type ShownState } from "./html";
import { BUNDLE_VERSION, bundleFiles, contentPathOf, type Bundle } from "./bundle";
import { type Fetcher, type ServerCertificate, type VerificationReport } from "./types";

/** Entries the HTML report's timeline is assembled for at most (a larger instance is reported without it). */
export const MAX_TIMELINE_ENTRIES = 100_000;

/**
 * A protocol file as `verify <file>` reads it (protocol version 3): a head alone, or a whole protocol (head and
 * entries inline). Strict JSON (a member named twice is refused); PROTOCOL_INVALID or PROTOCOL_VERSION otherwise.
 */
export function parseProtocolFile(source: string | Uint8Array): ProtocolHead | InstanceProtocol {
  const text = typeof source === "string" ? source : decodeUtf8(source, "protocol");
  const json = parseStrictJson(text, "protocol");
  if (typeof json !== "object" || json === null || !("instance_protocol" in json)) return parseHead(text);
  checkVersion(json);
  const result = safeParseBounded(wholeProtocolSchema, json);
  if (!result.success) {
    throw new StatetrailError(
      "PROTOCOL_INVALID",
      `protocol does not match the schema of a whole protocol:\n  ${describeIssues(result).join("\n  ")}`,
    );
  }
  return result.data;
}

/**
 * Keeps what a verification fetched, so that a report can show the timeline it verified without fetching
 * anything again (`statetrail verify --html`) and an offline bundle can be written (`--save-bundle`). Bodies are
 * kept by URL and by content path (`instances/<h>/protocol/pages/<k>`, `states/<h>`, …); a state document is only
 * taken when its data line hashes to the entry's state hash and pages only through the decoder against the head's accumulator, so what the report shows
 * is exactly what the hashes name.
 */
export class FetchRecorder {
  private readonly byUrl = new Map<string, Buffer>();
  private readonly byPath = new Map<string, Buffer>();
  /** The certificate each origin presented (the first: FetchSession pins an origin to it). */
  private readonly certificates = new Map<string, ServerCertificate>();
  private total = 0;
  /** Whether a body was not kept because of the limit (a bundle made now would be incomplete). */
  overflowed = false;

  /** Stops keeping bodies past this many bytes in all (default 256 MiB). */
  constructor(private readonly maxTotalBytes = 256 * 1024 * 1024) {}

  wrap(fetcher: Fetcher): Fetcher {
    return async (url, request) => {
      const fetched = await fetcher(url, request);
      const known = this.byUrl.get(url);
      if (known) this.total -= known.length; // fetched again (a page of a running instance): the newest is kept
      if (this.total + fetched.bytes.length <= this.maxTotalBytes) {
        this.total += fetched.bytes.length;
        this.byUrl.set(url, fetched.bytes);
        const path = contentPathOf(url);
        if (path !== null) this.byPath.set(path, fetched.bytes);
      } else {
        if (known) this.total += known.length;
        this.overflowed = true;
      }
      if (fetched.certificate) {
        const origin = originOrNull(url);
        if (origin && !this.certificates.has(origin)) this.certificates.set(origin, fetched.certificate);
      }
      return fetched;
    };
  }

  /** The protocol head read from `url`, if it was fetched and parses. */
  headAt(url: string): ProtocolHead | null {
    const bytes = this.byUrl.get(url);
    if (!bytes) return null;
    try {
      return parseHead(bytes);
    } catch {
      return null;
    }
  }

  /**
   * The entries of `head` from the pages that were fetched, decoded against the head's accumulator (as the steps
   * decode them); null when a page was not fetched, does not decode, or does not end at the head's accumulator, or
   * the instance is larger than {@link MAX_TIMELINE_ENTRIES}.
   */
  entriesOf(head: ProtocolHead): ProtocolEntry[] | null {
    if (head.entries > MAX_TIMELINE_ENTRIES) return null;
    const entries: ProtocolEntry[] = [];
    let accumulator = head.instance_hash;
    try {
      for (let index = 0; index < pageCount(head.entries, head.page_size); index += 1) {
        const bytes = this.byPath.get(`instances/${head.instance_hash}/protocol/pages/${index}`);
        if (!bytes) return null;
        const wanted = Math.min(head.page_size, head.entries - index * head.page_size);
        const page = decodePage(bytes, {
          instanceHash: head.instance_hash,
          index,
          accumulatorBefore: accumulator,
          wanted,
        });
        if (page.entries.length !== wanted) return null;
        entries.push(...page.entries);
        accumulator = page.accumulatorAfter;
      }
    } catch (error) {
      if (isStatetrailError(error)) return null;
      throw error;
    }
    return accumulator === head.accumulator ? entries : null;
  }

  /**
   * The state documents of the protocol's entries that were fetched, by state hash: only those whose data line hashes
   * to the entry's state hash and that read strictly (every disclosure matching its digest), with what they disclose.
   */
  statesOf(protocol: InstanceProtocol): Map<string, ShownState> {
    const states = new Map<string, ShownState>();
    for (const entry of protocol.instance_protocol) {
      const bytes = this.byPath.get(`states/${entry.state_hash}`);
      if (!bytes) continue;
      try {
        const read = readStateDocument(bytes);
        if (sha256Hex(read.dataBytes) !== entry.state_hash) continue;
        states.set(entry.state_hash, { data: read.data, disclosed: read.disclosed, redacted: read.redacted });
      } catch {
        // not a state document: shown without nesting
      }
    }
    return states;
  }

  /**
   * What the HTML report of `report` shows: the protocol read from the report's source (its head and the pages
   * fetched), or `protocol` for a file input (a whole protocol, or a head whose pages were fetched), and its state
   * data, when the protocol is the instance the report is about.
   */
  evidenceFor(report: VerificationReport, protocol?: InstanceProtocol | ProtocolHead | string | null): ReportEvidence {
    let read: InstanceProtocol | ProtocolHead | null = this.headAt(report.source);
    if (!read && protocol) {
      try {
        read = typeof protocol === "string" ? parseProtocolFile(protocol) : protocol;
      } catch {
        read = null;
      }
    }
    if (read && report.subject && read.instance_hash !== report.subject.instance_hash) read = null;
    const verified = read ? this.whole(read) : null;
    if (verified) return { report, protocol: verified, states: this.statesOf(verified) };
    // Too large to assemble, or pages missing: the HTML report summarises the recorded pages one at a time.
    const head = read && !("instance_protocol" in read) ? read : null;
    const readPage = head
      ? (index: number): Buffer | null =>
          this.byPath.get(`instances/${head.instance_hash}/protocol/pages/${index}`) ?? null
      : null;
    return { report, protocol: null, states: new Map(), head, readPage };
  }

  /** A whole protocol: as given, or a head with the entries of its recorded pages (null without them). */
  private whole(protocol: InstanceProtocol | ProtocolHead): InstanceProtocol | null {
    if ("instance_protocol" in protocol) return protocol;
    const entries = this.entriesOf(protocol);
    return entries ? { ...protocol, instance_protocol: entries } : null;
  }

  /**
   * An offline bundle (bundle.ts) of the instances `reports` are about: every body fetched, under its content
   * path, and for each instance the certificate its issuer's origin presented. A protocol read from a file
   * (`protocolFile`) goes in as the protocol of its instance. Reports without a protocol are left out.
   */
  toBundle(reports: readonly VerificationReport[], options: { madeBy: string; protocolFile?: string | null }): Bundle {
    const bodies = new Map(this.byUrl);
    let fromFile: InstanceProtocol | ProtocolHead | null = null;
    if (options.protocolFile) {
      try {
        fromFile = parseProtocolFile(options.protocolFile);
      } catch {
        fromFile = null;
      }
    }
    const instances: Bundle["instances"] = [];
    for (const report of reports) {
      if (!report.subject) continue;
      const hash = report.subject.instance_hash;
      // A listing that names an instance twice gives two reports: the bundle holds it once (bundle.ts refuses twice).
      if (instances.some((instance) => instance.instance_hash === hash)) continue;
      const protocol = this.headAt(report.source) ?? (fromFile?.instance_hash === hash ? fromFile : null);
      if (!protocol) continue;
      const root = protocol.issuer.url.replace(/\/+$/, "");
      const protocolUrl =
        contentPathOf(report.source) === `instances/${hash}/protocol`
          ? report.source
          : `${root}/instances/${hash}/protocol`;
      if (protocol === fromFile && options.protocolFile) {
        // The file is what was verified: its head, and its pages when it holds its entries (a head alone was
        // verified with the pages fetched from the issuer's server, recorded above).
        if ("instance_protocol" in fromFile) {
          bodies.set(protocolUrl, Buffer.from(JSON.stringify(headOf(fromFile)) + "\n", "utf8"));
          const pages = contentUrls(protocolUrl.slice(0, -`/instances/${hash}/protocol`.length));
          encodePages(fromFile).forEach((bytes, index) => bodies.set(pages.page(hash, index), bytes));
        } else {
          bodies.set(protocolUrl, Buffer.from(options.protocolFile, "utf8"));
        }
      }
      const certificate = this.certificates.get(originOrNull(root) ?? "") ?? null;
      instances.push({
        instance_hash: hash,
        protocol_url: protocolUrl,
        certificate: certificate
          ? {
              fingerprint: certificate.fingerprint,
              not_before: certificate.notBefore,
              not_after: certificate.notAfter,
              ...(certificate.subject ? { subject: certificate.subject } : {}),
            }
          : null,
      });
    }
    return {
      statetrail_bundle: BUNDLE_VERSION,
      created_at: new Date().toISOString(),
      made_by: options.madeBy,
      instances,
      files: bundleFiles(bodies),
    };
  }
}

function originOrNull(url: string): string | null {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}
