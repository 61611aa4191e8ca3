import { sha256Hex } from "../chain/hash";
import { safeParseBounded } from "../protocol/limits";
import { parseProtocol, stateDataSchema, type InstanceProtocol, type StateData } from "../protocol/schema";
import { type ReportEvidence } from "./html";
import { BUNDLE_VERSION, bundleFiles, contentPathOf, type Bundle } from "./bundle";
import { type Fetcher, type ServerCertificate, type VerificationReport } from "./types";

/**
 * Keeps what a verification fetched, so that a report can show the timeline it verified without fetching
 * anything again (`statetrail verify --html`). Bodies are kept by URL and by SHA-256; state data is only
 * ever taken by its hash, so what the report shows is exactly what the hashes name.
 */
export class FetchRecorder {
  private readonly byUrl = new Map<string, Buffer>();
  private readonly byHash = new Map<string, Buffer>();
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
      if (this.total + fetched.bytes.length <= this.maxTotalBytes) {
        this.total += fetched.bytes.length;
        this.byUrl.set(url, fetched.bytes);
        this.byHash.set(sha256Hex(fetched.bytes), fetched.bytes);
      } else {
        this.overflowed = true;
      }
      if (fetched.certificate) {
        const origin = originOrNull(url);
        if (origin && !this.certificates.has(origin)) this.certificates.set(origin, fetched.certificate);
      }
      return fetched;
    };
  }

  /** The protocol read from `url`, if it was fetched and parses. */
  protocolAt(url: string): InstanceProtocol | null {
    const bytes = this.byUrl.get(url);
    if (!bytes) return null;
    try {
      return parseProtocol(bytes.toString("utf8"));
    } catch {
      return null;
    }
  }

  /** State data of the protocol's entries that was fetched, by state hash. */
  statesOf(protocol: InstanceProtocol): Map<string, StateData> {
    const states = new Map<string, StateData>();
    for (const entry of protocol.instance_protocol) {
      const bytes = this.byHash.get(entry.state_hash);
      if (!bytes) continue;
      try {
        const parsed = safeParseBounded(stateDataSchema, JSON.parse(bytes.toString("utf8")));
        if (parsed.success) states.set(entry.state_hash, parsed.data);
      } catch {
        // not state data: shown without nesting
      }
    }
    return states;
  }

  /**
   * What the HTML report of `report` shows: the protocol fetched from the report's source (or `protocol`,
   * for a file input) and its state data, when the protocol is the instance the report is about.
   */
  evidenceFor(report: VerificationReport, protocol?: InstanceProtocol | string | null): ReportEvidence {
    let verified: InstanceProtocol | null = this.protocolAt(report.source);
    if (!verified && protocol) {
      try {
        verified = typeof protocol === "string" ? parseProtocol(protocol) : protocol;
      } catch {
        verified = null;
      }
    }
    if (verified && report.subject && verified.instance_hash !== report.subject.instance_hash) verified = null;
    return { report, protocol: verified, states: verified ? this.statesOf(verified) : new Map() };
  }

  /**
   * An offline bundle (bundle.ts) of the instances `reports` are about: every body fetched, under its content
   * path, and for each instance the certificate its issuer's origin presented. A protocol read from a file
   * (`protocolFile`) goes in as the protocol of its instance. Reports without a protocol are left out.
   */
  toBundle(reports: readonly VerificationReport[], options: { madeBy: string; protocolFile?: string | null }): Bundle {
    const bodies = new Map(this.byUrl);
    let fromFile: InstanceProtocol | null = null;
    if (options.protocolFile) {
      try {
        fromFile = parseProtocol(options.protocolFile);
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
      const protocol = this.protocolAt(report.source) ?? (fromFile?.instance_hash === hash ? fromFile : null);
      if (!protocol) continue;
      const root = protocol.issuer.url.replace(/\/+$/, "");
      const protocolUrl =
        contentPathOf(report.source) === `instances/${hash}/protocol`
          ? report.source
          : `${root}/instances/${hash}/protocol`;
      if (protocol === fromFile && options.protocolFile)
        bodies.set(protocolUrl, Buffer.from(options.protocolFile, "utf8"));
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
