import { type ErrorCode } from "../errors";
import { type InstanceStatus } from "../protocol/schema";
import { type SignInSession } from "./auth";

/**
 * The verifier's steps. V1–V9 follow DESIGN.md ("Verifier pipeline"); V0 is the precondition every chain
 * step relies on: the RPC serves the trusted chain and the protocol names the trusted registries.
 */
export const STEP_IDS = ["V0", "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9"] as const;
export type StepId = (typeof STEP_IDS)[number];

export const STEP_TITLES: Record<StepId, string> = {
  V0: "chain and registries are the trusted ones",
  V1: "protocol fetched over TLS, server certificate captured",
  V2: "ENS name links the issuer address and the server origin",
  V3: "server certificate registered for the issuer, in its window, not revoked",
  V4: "model bytes hash to model_hash and the model is registered",
  V5: "instance created on-chain by the issuer for the model",
  V6: "every state: bytes, on-chain event, block, time, sender, link",
  V7: "complete: the on-chain chain equals the protocol; head and status agree",
  V8: "protocol signed by the issuer",
  V9: "conformance: the model, replayed from the verified input with the recorded Task outcomes, gives the recorded run",
};

/**
 * - `pass`: checked and holds.
 * - `fail`: checked and does not hold — evidence that the protocol, its data or its server lies.
 * - `skip`: not checked, with the reason (not configured, nothing to check, or a prerequisite is missing).
 * - `error`: could not be checked (network, RPC, data not served).
 * - `partial`: checked as far as the disclosed data allows, nothing found against it, but part of what the step
 *   checks was not disclosed to the auditor (selective disclosure, protocol v4): the verdict is at best
 *   `valid-as-disclosed`, never `valid`.
 */
export type StepStatus = "pass" | "fail" | "skip" | "error" | "partial";

export interface StepResult {
  id: StepId;
  title: string;
  status: StepStatus;
  /** One line saying what was found. */
  detail: string;
  /** Whether the verdict "valid" needs this step to pass (see {@link verdictOf}). */
  required: boolean;
  /** For `error` (and some `fail`s): the StatetrailError code behind it. */
  code?: ErrorCode;
  /** Every individual finding behind a `fail` or `error`, capped (the last line then says how many more). */
  problems: string[];
  durationMs: number;
}

/**
 * - `valid`: every required step passed (and none failed), with every field of the instance disclosed.
 * - `invalid`: at least one step failed: the evidence contradicts the protocol.
 * - `could-not-verify`: nothing failed, but a required step was skipped or could not be performed.
 * - `valid-as-disclosed`: nothing failed and every required step ran, but some data was not disclosed to the auditor
 *   (the execution input, a field of a state, or so much that V9 could not replay or compare all of the run): what
 *   was disclosed is genuine and consistent; what was not is only known by its digest.
 */
export type Verdict = "valid" | "invalid" | "could-not-verify" | "valid-as-disclosed";

export type ExitCode = 0 | 1 | 2 | 3;

export const EXIT_CODES: Record<Verdict, ExitCode> = {
  valid: 0,
  invalid: 1,
  "could-not-verify": 2,
  "valid-as-disclosed": 3,
};

/** Seq ranges listed at most in a disclosure summary (the rest are counted). */
export const MAX_LISTED_RANGES = 50;

/**
 * What the auditor was shown of the instance (protocol v4, selective disclosure): the execution input, and the data
 * fields of the states whose documents were read and verified (V5, V6), and how far V9 could replay the run.
 */
export interface DisclosureSummary {
  /** `unknown`: V5 could not read the input document (V5 then errs or fails). */
  execution_input: "disclosed" | "redacted" | "unknown";
  /** States whose documents were read and verified against their registered hashes. */
  states: number;
  /** Of those, the states with at least one field not disclosed. */
  states_with_redactions: number;
  /** Not-disclosed fields per field name, over the states read. */
  redacted_fields: { input: number; caught: number; outcome: number; context: number };
  /** The seqs of the states with redactions, as ranges ("4", "7-9"), at most {@link MAX_LISTED_RANGES}. */
  redacted_states: string[];
  /**
   * V9's replay: `full` every state compared field by field; `partial` replayed, but the fields listed in
   * `not_compared` were not disclosed and so not compared; `none` not replayed because something it needs was not
   * disclosed (`not_replayed` says what); `not-run` V9 did not replay for another reason (not requested, or it
   * skipped, failed or erred: see V9).
   */
  replay: "full" | "partial" | "none" | "not-run";
  /** Why the run was not replayed (`none`), e.g. "the execution input is not disclosed"; null otherwise. */
  not_replayed: string | null;
  /** The seqs of the states not replayed or not fully compared, as ranges, at most {@link MAX_LISTED_RANGES}. */
  not_compared: string[];
  /** Everything was disclosed and every state fully compared (or the replay not requested). */
  complete: boolean;
}

export interface VerificationReport {
  statetrail_verification: 1;
  verdict: Verdict;
  exit_code: ExitCode;
  /** What was verified: the protocol URL, or the name the caller gave a file/object input. */
  source: string;
  /** The offline bundle file the protocol and its data were read from (bundle.ts); absent otherwise. */
  bundle?: string;
  /** From the protocol, once it could be read (claims, not findings: the steps check them). */
  subject: {
    instance_hash: string;
    issuer: string;
    /** The issuer's ENS name the protocol claims (V2 checks it is the issuer's primary name). */
    ens_name?: string | null;
    chain_id: number;
    model_hash: string;
    states: number;
    status: InstanceStatus;
  } | null;
  /**
   * What the auditor asked about (the instance in the URL or `--instance`, the issuer an ENS name resolves to
   * or `--issuer`), and whether the protocol is about exactly that; absent when nothing was asked.
   */
  expected?: {
    instance_hash: string | null;
    issuer: string | null;
    ens_name: string | null;
    /** null: no protocol could be read to compare. */
    matched: boolean | null;
  };
  /** The block every chain read was pinned to, once the chain could be reached. */
  block_number: number | null;
  /**
   * What the verification trusted, so that anyone can repeat it (the HTML report shows it with the command line).
   * Absent only on a report refused before the verifier ran (report.ts `refusedReport`).
   */
  checked_against?: CheckedAgainst;
  /** The time the validity windows were checked at (Unix seconds). */
  verified_at: number;
  steps: StepResult[];
  /**
   * What of the instance was disclosed to the auditor (protocol v4), once the protocol could be read; null otherwise.
   * Anything not disclosed makes a verdict that would be `valid` `valid-as-disclosed`.
   */
  disclosure?: DisclosureSummary | null;
}

/** The trust a verification rested on: where the registries came from, which endpoint and block were read. */
export interface CheckedAgainst {
  /** The trusted chain id (the RPC endpoint was checked to serve it). */
  chain_id: number;
  /** The trusted registry addresses (never taken from the protocol). */
  registries: { model: string; certificate: string; instance: string };
  /** Where the registries came from: `deployments/<network>` or `--registries`. */
  registries_source: string;
  /** The ENS registry V2 read; null when ENS was not read. */
  ens_registry: string | null;
  /**
   * The JSON-RPC endpoint read, without credentials (userinfo dropped, API-key-like path segments and every
   * query value replaced by `REDACTED`); null when the provider has no URL (an in-process chain).
   */
  rpc_url: string | null;
  /** The block every chain read was pinned to, and its hash; null when the chain was not read. */
  block_number: number | null;
  block_hash: string | null;
}

/**
 * What the auditor asked about. The verdict is bound to it: a protocol about another instance or another
 * issuer fails V1 (SUBJECT_MISMATCH), however genuine it is otherwise.
 */
export interface ExpectedSubject {
  /** The instance asked for (`--instance`; a URL's `/instances/<hash>/protocol` is always expected too). */
  instanceHash?: string;
  /** The issuer asked for: the address an ENS name resolves to (`addr`), or `--issuer`. */
  issuer?: string;
  /** The ENS name `issuer` was resolved from, for the report. */
  ensName?: string;
}

/** The server certificate as the fetcher saw it. Times are Unix seconds. */
export interface ServerCertificate {
  /** SHA-256 of the DER bytes, 64 lowercase hex characters (the form registered on-chain). */
  fingerprint: string;
  notBefore: number;
  notAfter: number;
  der?: Buffer;
  subject?: string;
}

export interface FetchRequest {
  /** Refuse bodies larger than this. */
  maxBytes: number;
  /** Refuse the connection unless the server presents this certificate (64 hex). */
  fingerprint?: string;
  timeoutMs: number;
  /**
   * The auditor's sign-ins (auth.ts), for a server that serves the URL only to auditors it granted access: the real
   * fetcher signs in when asked; fetchers of mirrors and bundles ignore it (they never reach the issuer's server).
   */
  auth?: SignInSession;
}

export interface Fetched {
  bytes: Buffer;
  /** The TLS server certificate; null when the resource did not come over TLS. */
  certificate: ServerCertificate | null;
}

/**
 * How the verifier reads URLs. The real one is {@link pinnedFetcher} (HTTPS with certificate capture and
 * pinning); tests inject one that serves bytes from memory. Rejects with a StatetrailError
 * (FETCH_FAILED, TLS_FAILED, NOT_FOUND) when the resource can't be obtained.
 */
export type Fetcher = (url: string, request: FetchRequest) => Promise<Fetched>;

/** What V2 reads from ENS. Every method resolves null when the record does not exist. */
export interface EnsReader {
  /** The primary (reverse) name of `address`. */
  primaryName(address: string): Promise<string | null>;
  /** The `addr` record of `name`. */
  resolveAddress(name: string): Promise<string | null>;
  /** A text record of `name`. */
  text(name: string, key: string): Promise<string | null>;
}
