import { type InstanceProtocol, type ProtocolHead } from "../protocol/schema";
import { type ChainView } from "./chain";
import { type VerifiedArtifacts } from "./conformance/artifacts";
import { type FetchSession } from "./fetcher";
import { type StepOutcome } from "./findings";
import { type EnsReader, type ExpectedSubject, type ServerCertificate, type StepId } from "./types";

/**
 * What to verify: a URL (fetched over TLS), or a protocol already read from a file or built in memory: a head alone
 * (its pages are then read from the issuer's server, or the mirror) or a whole protocol (head and entries inline, as
 * text or object; its pages are then encoded from memory and read through the same page decoder).
 */
export type ProtocolInput = { url: string } | { protocol: InstanceProtocol | ProtocolHead | string; name?: string };

/**
 * Where the pages of the protocol come from (set by V1 with the head): page `index`'s bytes as served. The steps
 * read pages only through this, in order, one (plus a bounded read-ahead) at a time.
 */
export interface PageSource {
  /** Where page `index` is read from (a URL of the issuer's or the mirror's, or "memory"), for findings. */
  describe(index: number): string;
  read(index: number): Promise<Buffer>;
}

export interface MaxBytes {
  /** The head (or a whole protocol read from a file or memory). */
  protocol: number;
  /** One page. */
  page: number;
  model: number;
  instanceData: number;
  state: number;
}

export const DEFAULT_MAX_BYTES: MaxBytes = {
  protocol: 64 * 1024 * 1024,
  page: 32 * 1024 * 1024,
  model: 8 * 1024 * 1024,
  instanceData: 16 * 1024 * 1024,
  state: 4 * 1024 * 1024,
};

export interface VerifySettings {
  /** State bodies fetched at once (default 8). */
  concurrency: number;
  maxBytes: MaxBytes;
  /** At most this many transactions are looked up to explain an event that is not where the protocol says. */
  maxDiagnostics: number;
  /** Check V9 (conformance to the model); false: V9 is skipped (`--no-conformance`). */
  conformance: boolean;
}

/** Everything a step reads. V1 fills in `protocol`, `origin` and `certificate`; the other steps only read. */
export interface VerifyContext {
  readonly input: ProtocolInput;
  readonly chain: ChainView;
  readonly web: FetchSession;
  readonly ens: EnsReader | null;
  readonly settings: VerifySettings;
  /** The time validity windows are checked at (Unix seconds). */
  now(): Promise<number>;
  /** The protocol's head, once V1 has read it (entries are read from `pages`). */
  protocol: ProtocolHead | null;
  /** The protocol's pages, once V1 has read the head. */
  pages: PageSource | null;
  /** The origin the protocol speaks for: where it was fetched from, or the origin of its issuer url. */
  origin: string | null;
  /** The certificate the issuer's origin presented. */
  certificate: ServerCertificate | null;
  /** What V4 and V6 verified and V9 reads again (model bytes, state data), so nothing is fetched twice. */
  readonly artifacts: VerifiedArtifacts;
  /** What the auditor asked about (V1 binds the protocol to it; V2 the ENS name asked for). */
  readonly expected?: ExpectedSubject;
}

/** The protocol, once V1 has read it; steps run only when it is there. */
export type ReadyContext = VerifyContext & { protocol: ProtocolHead; pages: PageSource };

export interface Step {
  id: StepId;
  run(context: ReadyContext): Promise<StepOutcome>;
}
