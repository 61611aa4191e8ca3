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
 */
export type StepStatus = "pass" | "fail" | "skip" | "error";

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
 * - `valid`: every required step passed (and none failed).
 * - `invalid`: at least one step failed: the evidence contradicts the protocol.
 * - `could-not-verify`: nothing failed, but a required step was skipped or could not be performed.
 */
export type Verdict = "valid" | "invalid" | "could-not-verify";

export const EXIT_CODES: Record<Verdict, 0 | 1 | 2> = { valid: 0, invalid: 1, "could-not-verify": 2 };

export interface VerificationReport {
  statetrail_verification: 1;
  verdict: Verdict;
  exit_code: 0 | 1 | 2;
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
