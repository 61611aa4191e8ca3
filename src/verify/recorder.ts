import { sha256Hex } from "../chain/hash";
import { safeParseBounded } from "../protocol/limits";
import { parseProtocol, stateDataSchema, type InstanceProtocol, type StateData } from "../protocol/schema";
import { type ReportEvidence } from "./html";
import { type Fetcher, type VerificationReport } from "./types";

/**
 * Keeps what a verification fetched, so that a report can show the timeline it verified without fetching
 * anything again (`statetrail verify --html`). Bodies are kept by URL and by SHA-256; state data is only
 * ever taken by its hash, so what the report shows is exactly what the hashes name.
 */
export class FetchRecorder {
  private readonly byUrl = new Map<string, Buffer>();
  private readonly byHash = new Map<string, Buffer>();
  private total = 0;

  /** Stops keeping bodies past this many bytes in all (default 256 MiB). */
  constructor(private readonly maxTotalBytes = 256 * 1024 * 1024) {}

  wrap(fetcher: Fetcher): Fetcher {
    return async (url, request) => {
      const fetched = await fetcher(url, request);
      if (this.total + fetched.bytes.length <= this.maxTotalBytes) {
        this.total += fetched.bytes.length;
        this.byUrl.set(url, fetched.bytes);
        this.byHash.set(sha256Hex(fetched.bytes), fetched.bytes);
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
}
