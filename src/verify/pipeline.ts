import { type Provider, type Signer } from "ethers";
import { toStatetrailError } from "../errors";
import { ChainView, type TrustedSetup } from "./chain";
import { checkedAgainst } from "./checked-against";
import {
  DEFAULT_MAX_BYTES,
  type MaxBytes,
  type ProtocolInput,
  type ReadyContext,
  type Step,
  type VerifyContext,
} from "./context";
import { issuerCertificateCheck, signInSessionFor, type SignInSession } from "./auth";
import { FetchSession, pinnedFetcher } from "./fetcher";
import { MIRROR_OPTIONAL_STEPS, MirrorReader, type MirrorOptions } from "./mirror";
import { type StepOutcome } from "./findings";
import { DEFAULT_BACKOFF_MS, DEFAULT_LOG_CHUNK, DEFAULT_LOG_RETRIES } from "./logs";
import { anchorsStep } from "./steps/v0-anchors";
import { instanceNamedBy, readProtocol, subjectMismatches } from "./steps/v1-transport";
import { ensStep } from "./steps/v2-ens";
import { certificateStep } from "./steps/v3-certificate";
import { modelStep } from "./steps/v4-model";
import { instanceStep } from "./steps/v5-instance";
import { statesStep } from "./steps/v6-states";
import { completenessStep } from "./steps/v7-completeness";
import { signatureStep } from "./steps/v8-signature";
import { instancePass } from "./steps/pass";
import { VerifiedArtifacts } from "./conformance/artifacts";
import {
  STEP_IDS,
  STEP_TITLES,
  type EnsReader,
  type ExpectedSubject,
  type Fetcher,
  type StepId,
  type StepResult,
  type VerificationReport,
} from "./types";
import { exitCodeOf, verdictOf } from "./verdict";
import { installEnsFastPath } from "./ens-fast-path";
import { lazy } from "../lazy";

/*
 * V9 replays the run on the ASL interpreter (aws-local-stepfunctions and the conformance walker, the largest part
 * of the verifier's modules): loaded when a verification first needs it, while the steps before V9 wait on the
 * network (initialiseWhileWaiting), not when the verifier is imported (`verify --help`, `verify <name>`'s listing).
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const v9 = lazy(() => require("./steps/v9-conformance") as typeof import("./steps/v9-conformance"));
const conformanceStep: Step = {
  id: "V9",
  // Not requested: reported without loading the interpreter (seconds of module loading).
  run: (context) =>
    context.settings.conformance
      ? v9.conformanceStep.run(context)
      : Promise.resolve({ status: "skip", detail: "not requested (--no-conformance)" }),
};

/**
 * What V9 needs done once in a process, in pieces of a few milliseconds each, leaves first: the interpreter (its
 * bundle, in the CLI), its corrections' module and the engine around it, the conformance walker, V9's step, then the
 * corrections themselves (read through the inspector: interpreter-patches.ts). Then whatever the CLI registered under
 * {@link WHILE_WAITING} (ethers' secp256k1 table of base point multiples, which V8's first signature would build).
 * Each is an initialisation, never a result: V9 does all of its work when it runs, and what is not done by then it
 * does itself, as before.
 */
const CONFORMANCE_PRELOAD: ReadonlyArray<() => unknown> = [
  () => require("../engine/polyfill"),
  () => require("aws-local-stepfunctions"),
  () => require("../engine/interpreter-patches"),
  () => require("../engine/local"),
  () => require("./conformance"),
  () => v9.conformanceStep,
  () =>
    (
      require("../engine/interpreter-patches") as typeof import("../engine/interpreter-patches")
    ).installInterpreterPatches(),
];
/* eslint-enable @typescript-eslint/no-require-imports */

/** Where a front end (the CLI's bundle) puts more one-time initialisations for {@link initialiseWhileWaiting}. */
export const WHILE_WAITING = Symbol.for("statetrail.verify.whileWaiting");

/**
 * Runs {@link CONFORMANCE_PRELOAD} (when V9 is requested) and what is registered under {@link WHILE_WAITING}, one
 * piece a turn of the event loop (setImmediate), started once V1 is done: the steps V0 to V8 spend most of their
 * time waiting for the RPC endpoint and the issuer's server, and a piece then costs nothing, where loading V9's
 * modules in one block during V1 held up V1's answers (some 30 ms of a `verify`). An error stops the pieces; V9 meets
 * it again when it runs and reports it (guarded).
 */
function initialiseWhileWaiting(conformance: boolean): void {
  const extra = (globalThis as Record<symbol, unknown>)[WHILE_WAITING];
  const pieces = [
    ...(conformance ? CONFORMANCE_PRELOAD : []),
    ...(Array.isArray(extra) ? (extra as Array<() => unknown>) : []),
  ];
  let next = 0;
  const turn = (): void => {
    try {
      pieces[next++]();
    } catch {
      return;
    }
    if (next < pieces.length) setImmediate(turn);
  };
  if (pieces.length > 0) setImmediate(turn);
}

/** The steps after V1, in the order they run (V1 runs first: it obtains the protocol). */
export const STEPS: readonly Step[] = [
  anchorsStep,
  ensStep,
  certificateStep,
  modelStep,
  instanceStep,
  statesStep,
  completenessStep,
  signatureStep,
  conformanceStep,
];

export interface VerifyOptions {
  /** The protocol: a URL to fetch over TLS, or a protocol read from a file (text or object). */
  input: ProtocolInput;
  /** An ethers provider for the chain (`connect()` from chain/provider.ts, or Hardhat's `ethers.provider`). */
  provider: Provider;
  /** The chain id and registries to trust (`trustedFromDeployment(loadDeployment(network))` or explicit flags). */
  trusted: TrustedSetup;
  /** How URLs are read; default {@link pinnedFetcher} (HTTPS, server certificate captured, pinned per origin). */
  fetcher?: Fetcher;
  /** ENS reads for V2 (`ensReaderFromProvider(provider)`); null or absent: V2 is skipped. */
  ens?: EnsReader | null;
  /**
   * Steps allowed to be skipped or not performed without blocking the verdict "valid" (a `fail` still makes
   * it invalid). Default none: every step is required. A caller without ENS passes `["V2"]`.
   */
  optional?: readonly StepId[];
  /** The time validity windows are checked at (Unix seconds); default max(wall clock, latest block time). */
  now?: number;
  /** State bodies fetched at once (default 8). */
  concurrency?: number;
  /** Blocks per `eth_getLogs` call (default 10,000), retries (default 4) and first backoff (default 250 ms). */
  logChunkSize?: number;
  logRetries?: number;
  retryBackoffMs?: number;
  /** Deadline of one fetch (default 15 s). */
  timeoutMs?: number;
  maxBytes?: Partial<MaxBytes>;
  /** Called as each step completes, for progress output. */
  onStep?: (step: StepResult) => void;
  /** Check V9, conformance to the model (default true); false skips it, reported as skipped and optional. */
  conformance?: boolean;
  /**
   * Bytes of verified state data kept for V9's replay (default 256 MiB). A run whose data does not fit is not
   * replayed: V9 errs (could not verify), never passes.
   */
  keptStateBytes?: number;
  /**
   * The input URL is a copy on a mirror (untrusted storage, mirror.ts): the issuer's URLs are read from it,
   * the issuer's TLS is not checked (V1 and V3 skipped and optional), every other check runs as usual.
   */
  mirror?: MirrorOptions;
  /**
   * What the auditor asked about: the verdict is bound to it (V1 fails a protocol about another instance or
   * issuer). A URL input always expects the instance it names.
   */
  expected?: ExpectedSubject;
  /**
   * The auditor's key, for an issuer's server that serves this instance only to auditors it granted access
   * (docs/design/ACCESS.md): on a 401 with a `SIWE` challenge the verifier signs in to that origin (EIP-4361, on
   * `trusted.chainId`) and asks once more. A signer's sign-ins are kept for the process (one per origin); a
   * {@link SignInSession} is used as is. Without it such a server's data can't be read: AUTH_REQUIRED, could not
   * verify. A 403 (no grant for the auditor's address) is GRANT_MISSING, could not verify. Development keys are
   * refused off chain 31337 (KEY_REFUSED).
   */
  auditor?: Signer | SignInSession | null;
}

/**
 * Verifies an instance protocol against the chain, ENS and its issuer's server, and returns the report of
 * every step (V0–V9) with the verdict. Never throws for what it finds: unreachable networks and missing
 * data become `error` steps and the verdict `could-not-verify`.
 */
export async function verifyProtocol(options: VerifyOptions): Promise<VerificationReport> {
  installEnsFastPath(); // the names V2 hashes, without building the Unicode tables first (ens-fast-path.ts)
  const chain = new ChainView(options.provider, options.trusted, {
    chunkSize: options.logChunkSize ?? DEFAULT_LOG_CHUNK,
    retries: options.logRetries ?? DEFAULT_LOG_RETRIES,
    backoffMs: options.retryBackoffMs ?? DEFAULT_BACKOFF_MS,
  });
  let now: Promise<number> | undefined;
  const expected = options.expected ?? {};
  const url = "url" in options.input ? options.input.url : null;
  // An encrypted mirror copy is opened with the auditor's key (the one it signs in with), asked for only then.
  const mirror = options.mirror
    ? new MirrorReader(
        {
          decryptionKey: () => signInSessionFor(options.auditor, options.trusted.chainId).privateKey(),
          ...options.mirror,
        },
        options.fetcher ?? pinnedFetcher,
      )
    : null;
  const context: VerifyContext = {
    input: options.input,
    chain,
    web: new FetchSession(
      mirror?.fetcher ?? options.fetcher ?? pinnedFetcher,
      options.timeoutMs ?? 15_000,
      signInsOf(options, chain, () => context.now()),
    ),
    ens: options.ens ?? null,
    settings: {
      concurrency: Math.max(1, options.concurrency ?? 8),
      maxBytes: { ...DEFAULT_MAX_BYTES, ...options.maxBytes },
      maxDiagnostics: 20,
      conformance: options.conformance !== false,
    },
    now: () =>
      (now ??= (async () => {
        if (options.now !== undefined) return options.now;
        const wall = Math.floor(Date.now() / 1000);
        const snapshot = await chain.snapshot().catch(() => null);
        return Math.max(wall, snapshot?.timestamp ?? 0);
      })()),
    protocol: null,
    pages: null,
    origin: null,
    certificate: null,
    artifacts: new VerifiedArtifacts(options.conformance !== false, options.keptStateBytes),
    expected,
  };
  const optional = new Set([...(options.optional ?? []), ...(mirror ? MIRROR_OPTIONAL_STEPS : [])]);
  if (options.conformance === false) optional.add("V9");
  const results: StepResult[] = [];
  // A step's duration is the wall time it added: from its start, or from the outcome of the step reported before it
  // if that came later, to its own outcome. Run one after another, that is each step's time; run at once, the
  // durations still add up to the verification's, and a step done while another ran (V8's signature, checked while
  // the pass read the pages) adds nothing.
  let lastOutcomeAt = 0;
  const record = (id: StepId, { outcome, startedAt, endedAt }: TimedOutcome): void => {
    const durationMs = Math.max(0, endedAt - Math.max(startedAt, lastOutcomeAt));
    lastOutcomeAt = Math.max(lastOutcomeAt, endedAt);
    const result: StepResult = {
      id,
      title: STEP_TITLES[id],
      status: outcome.status,
      detail: outcome.detail,
      required: !optional.has(id),
      ...(outcome.code ? { code: outcome.code } : {}),
      problems: outcome.problems ?? [],
      durationMs,
    };
    results.push(result);
    options.onStep?.(result);
  };

  const v1 = await timed(() => (mirror ? mirror.read(context, expected) : readProtocol(context, expected)));
  const protocol = context.protocol;
  const mismatches = protocol ? subjectMismatches(protocol, expected, url) : [];
  record("V1", boundToQuestion(v1, mismatches));
  if (!protocol) {
    for (const step of STEPS) {
      const now = Date.now();
      record(step.id, {
        outcome: { status: "skip", detail: "no protocol to verify (see V1)" },
        startedAt: now,
        endedAt: now,
      });
    }
  } else {
    const ready = context as ReadyContext;
    initialiseWhileWaiting(context.settings.conformance);
    startReads(ready);
    // V0 to V8 run at once: each only reads (the chain, ENS, the issuer's server) and checks what it read, the
    // streaming pass included, which the steps that need it share. Most of a verification is waiting for answers,
    // and the steps' questions now travel together (an RPC batch, parallel requests) instead of one after another.
    // V9 replays from what V4, V5 and the pass verified, so it runs after them. Reported in order, as each is done.
    const running = new Map(
      STEPS.filter((step) => step !== conformanceStep).map((step) => [step, timed(() => step.run(ready))]),
    );
    for (const step of STEPS) record(step.id, await (running.get(step) ?? timed(() => step.run(ready))));
  }

  const steps = STEP_IDS.map((id) => results.find((result) => result.id === id)!);
  // What was disclosed to the auditor (V5, V6) and how far V9 replayed: anything withheld makes "valid" valid-as-disclosed.
  const disclosure = protocol ? context.artifacts.disclosure.summary() : null;
  const verdict = verdictOf(steps, disclosure);
  const snapshot = protocol ? await chain.snapshot().catch(() => null) : null;
  const asked = expected.instanceHash || expected.issuer || (url && instanceNamedBy(url));
  return {
    statetrail_verification: 1,
    verdict,
    exit_code: exitCodeOf(verdict),
    source: "url" in options.input ? options.input.url : (options.input.name ?? "protocol object"),
    subject: protocol
      ? {
          instance_hash: protocol.instance_hash,
          issuer: protocol.issuer.address,
          ens_name: protocol.issuer.ens_name,
          chain_id: protocol.chain_id,
          model_hash: protocol.model_hash,
          states: protocol.entries,
          status: protocol.status,
        }
      : null,
    ...(asked
      ? {
          expected: {
            instance_hash: expected.instanceHash?.toLowerCase() ?? (url ? instanceNamedBy(url) : null),
            issuer: expected.issuer ?? null,
            ens_name: expected.ensName ?? null,
            matched: protocol ? mismatches.length === 0 : null,
          },
        }
      : {}),
    block_number: snapshot?.blockNumber ?? null,
    checked_against: await checkedAgainst(options.trusted, options.provider, snapshot, Boolean(options.ens)),
    verified_at: protocol ? await context.now() : Math.floor(Date.now() / 1000),
    steps,
    disclosure,
  };
}

/**
 * The verification's sign-ins: the auditor's session (shared by every verification with the same signer), and when
 * the question names the issuer (an ENS name's address, `--issuer`), a new sign-in only to a server presenting a
 * certificate that issuer registered on-chain (auth.ts, issuerCertificateCheck).
 */
function signInsOf(options: VerifyOptions, chain: ChainView, now: () => Promise<number>): SignInSession {
  const session = signInSessionFor(options.auditor, options.trusted.chainId);
  const issuer = options.expected?.issuer;
  if (!issuer || !session.hasAuditor) return session;
  return session.withServerCheck(issuerCertificateCheck(chain, issuer, now));
}

interface TimedOutcome {
  outcome: StepOutcome;
  startedAt: number;
  endedAt: number;
}

/** A step's outcome ({@link guarded}), when it started and when it ended. */
async function timed(run: () => Promise<StepOutcome>): Promise<TimedOutcome> {
  const startedAt = Date.now();
  const outcome = await guarded(run);
  return { outcome, startedAt, endedAt: Date.now() };
}

/**
 * Reads the steps make after a wait of their own, asked for as soon as the protocol is read: the streaming pass
 * (V3 needs its states' times after reading the certificate's record; V5 to V8 its results), V4's model record
 * (asked for after the model's bytes) and the block time of the instance's creation (V9, which runs last). Each is
 * memoized: the step that needs it awaits the same answer, and reports its error as before.
 */
function startReads(context: ReadyContext): void {
  const { chain, protocol } = context;
  const reads: Promise<unknown>[] = [instancePass(context), chain.modelOf(protocol.model_hash)];
  // V9's window for the start time and bound on the run's length.
  if (context.settings.conformance) reads.push(chain.blockTimestamp(protocol.created.block_nr));
  for (const read of reads) read.catch(() => undefined);
}

/**
 * V1's outcome, failed (SUBJECT_MISMATCH) if the protocol it read is not about what was asked (`mismatches`: the
 * instance the URL names and the instance and issuer of the question). V1 checks that on every input path; this holds it whatever path
 * read the protocol (a URL, a mirror copy, a file, a bundle), so that no "valid" is ever about another instance or
 * issuer than the report's `expected` (a mirror once bound its check to an instance found in the URL's query).
 */
function boundToQuestion(v1: TimedOutcome, mismatches: string[]): TimedOutcome {
  if (mismatches.length === 0) return v1;
  const problems = v1.outcome.problems ?? [];
  if (v1.outcome.status === "fail" && mismatches.every((problem) => problems.includes(problem))) return v1;
  const all = [...mismatches, ...problems.filter((problem) => !mismatches.includes(problem))];
  return { ...v1, outcome: { status: "fail", code: "SUBJECT_MISMATCH", detail: all[0], problems: all } };
}

/** Runs a step; anything it throws becomes an `error` outcome with the error's code. */
async function guarded(run: () => Promise<StepOutcome>): Promise<StepOutcome> {
  try {
    return await run();
  } catch (cause) {
    const error = toStatetrailError(cause, "VERIFY_INCOMPLETE");
    return { status: "error", detail: `${error.code}: ${error.message}`, problems: [error.message], code: error.code };
  }
}
