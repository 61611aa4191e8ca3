import { type Provider, type Signer } from "ethers";
import { toStatetrailError } from "../errors";
import { type HexHash } from "../chain/hash";
import { lazy } from "../lazy";
import { FetchError, pinnedFetch, sseSubscribe, type SseSubscription } from "../net/pinned-fetch";
import { decodePage, pageCount } from "../protocol/pages";
import { parseHead, type ProtocolEntry, type ProtocolHead } from "../protocol/schema";
import { issuerCertificateCheck, SignInSession, signInSessionFor } from "./auth";
import { type TrustedSetup } from "./chain";
import { type verifyProtocol } from "./pipeline";
import { type EnsReader, type ExitCode, type ExpectedSubject, type StepId, type VerificationReport } from "./types";

/*
 * What a watch needs only once it has the protocol's head (ethers, the registries, the whole verifier): loaded
 * after the head is fetched and announced, so that the first line does not wait for them.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const pipeline = lazy(() => require("./pipeline") as typeof import("./pipeline"));
const chainLib = lazy(() => require("./chain") as typeof import("./chain"));
const batch = lazy(() => require("./batch") as typeof import("./batch"));
const rebuild = lazy(() => require("./rebuild") as typeof import("./rebuild"));
const findings = lazy(() => require("./findings") as typeof import("./findings"));
const signing = lazy(() => require("../protocol/signing") as typeof import("../protocol/signing"));
/* eslint-enable @typescript-eslint/no-require-imports */

/** A failing (or not performed) step of a verification, as watch reports it. */
export interface WatchProblem {
  step: StepId;
  /** The error code behind it, when there is one (SERVER_UNREACHABLE, RPC_UNREACHABLE, CERT_REVOKED, …). */
  code?: string;
  detail: string;
}

/** What `statetrail watch` reports, one event per line. */
export type WatchEvent =
  /** The protocol's head, as the server serves it (not yet verified): the first line. */
  | {
      type: "watching";
      instance_hash: HexHash;
      issuer: string;
      model_hash: HexHash;
      states: number;
      status: string;
    }
  | {
      type: "verified";
      verdict: VerificationReport["verdict"];
      failed: string[];
      states: number;
      /** Why the verdict is not valid: each failing or not performed required step, with its code. */
      problems: WatchProblem[];
      /** What to do about a verdict other than valid. */
      hint?: string;
    }
  | { type: "published"; seq: number; state_name: string; state_hash: HexHash }
  | { type: "registered"; seq: number; state_hash: HexHash; block_nr: number }
  | { type: "divergence"; kind: "withheld" | "forged" | "revoked" | "invalid"; detail: string }
  | { type: "terminated"; status: string; verdict: VerificationReport["verdict"] }
  | { type: "error"; code: string; message: string; hint?: string };

/** The chain side of a watch: where to read, what to trust, what was asked. */
export interface WatchChain {
  provider: Provider;
  trusted: TrustedSetup;
  ens?: EnsReader | null;
  /** What the auditor asked about (the issuer of an ENS name, `--issuer`, `--instance`): see verifyProtocol. */
  expected?: ExpectedSubject;
}

export interface WatchOptions extends Partial<WatchChain> {
  /** The protocol URL (https). */
  url: string;
  /**
   * Connects to the chain (instead of `provider`, `trusted`, `ens`, `expected`), called once the protocol's head
   * has been fetched and announced: the first line does not wait for the chain's libraries.
   */
  connect?: () => Promise<WatchChain>;
  optional?: Parameters<typeof verifyProtocol>[0]["optional"];
  /** How long a state may be on-chain but unpublished, or published but not yet seen on-chain (default 10 s). */
  graceMs?: number;
  /** How often the chain and the protocol's head are read (default 1 s; an SSE event reads the head at once). */
  pollMs?: number;
  /** Stop after this long even if the instance keeps running (default: never). */
  timeoutMs?: number;
  onEvent: (event: WatchEvent) => void;
  /**
   * The auditor's key, for a server that serves the instance only to auditors it granted access: the head, the pages,
   * the event stream and the verifications sign in when asked (see verifyProtocol's `auditor`), once per origin.
   */
  auditor?: Signer | SignInSession | null;
}

export interface WatchResult {
  /** The last full verification. */
  report: VerificationReport;
  divergences: number;
  /**
   * 0 terminated valid with no divergence; 1 a divergence or an invalid verdict; 2 could not verify; 3 valid as
   * disclosed (some data not disclosed to the auditor).
   */
  exitCode: ExitCode;
}

/** What to do about a verdict, for the line that reports it. */
export function verdictHint(verdict: VerificationReport["verdict"], url: string): string | undefined {
  if (verdict === "invalid") {
    return `do not rely on this instance: the evidence contradicts it; \`statetrail verify ${url}\` gives the full report`;
  }
  if (verdict === "could-not-verify") {
    return (
      "nothing was found wrong, but the steps above could not be performed: fix what they name (the issuer's " +
      `server, the RPC endpoint, the registries), then run \`statetrail verify ${url}\` or watch again`
    );
  }
  if (verdict === "valid-as-disclosed") {
    return (
      "nothing was found wrong in what was disclosed to you, but some data was not (the execution input or fields " +
      `of states): \`statetrail verify ${url}\` lists what, and V9 replayed only what was disclosed`
    );
  }
  return undefined;
}

/** The `verified` event of a report: its verdict and, unless valid, every step behind it with its code. */
export function verifiedEvent(report: VerificationReport, url: string): Extract<WatchEvent, { type: "verified" }> {
  const problems: WatchProblem[] =
    report.verdict === "valid"
      ? []
      : report.steps
          .filter(
            (s) =>
              s.status === "fail" ||
              s.status === "partial" ||
              (s.required && (s.status === "error" || s.status === "skip")),
          )
          // A step skipped only because an earlier one failed says nothing more.
          .filter((s) => !(s.status === "skip" && /\(see V\d\)$/.test(s.detail)))
          .map((s) => ({ step: s.id, ...(s.code ? { code: s.code } : {}), detail: s.detail }));
  const hint = verdictHint(report.verdict, url);
  return {
    type: "verified",
    verdict: report.verdict,
    failed: report.steps.filter((s) => s.status === "fail").map((s) => s.id),
    states: report.subject?.states ?? 0,
    problems,
    ...(hint ? { hint } : {}),
  };
}

/**
 * Follows an instance like a Certificate Transparency monitor: the protocol's head and pages on one side (the
 * issuer's), the registry's events on the other (the chain's).
 *
 * It first fetches the protocol's head and says what it watches (`watching`, as served, not yet verified: before the
 * chain's and the verifier's modules are loaded), then catches up: a `published` and a `registered` line for every
 * state from the first, in seq order, reading the pages one at a time (never a whole protocol), whether the instance
 * is still running or finished before the watch started; then it follows live: the head is read again every poll
 * (with `If-None-Match` when the server gives an ETag) and at once on an SSE event (which is only a wake-up: entries
 * are taken from pages bound to a signed head, never from an event), and only what is new is read: the open page
 * again from its start (its accumulator is kept), then any new pages. Entries already read must come back
 * unchanged, the pages must end at the head's accumulator and each new head must be signed by the issuer, or the
 * watch reports a divergence. A state on-chain but not published (withheld), published but not on-chain (forged),
 * or a certificate revoked while watching is reported as soon as it is seen (after the grace period a live tracker
 * needs between a receipt and its publication). The whole protocol is verified while catching up (a running
 * instance) and once more on termination; every verdict other than valid names its failing steps, their codes and
 * what to do.
 */
export async function watchInstance(options: WatchOptions): Promise<WatchResult> {
  const graceMs = options.graceMs ?? 10_000;
  const pollMs = options.pollMs ?? 1_000;
  const emit = options.onEvent;
  const url = options.url;
  let connecting: Promise<WatchChain> | undefined;
  const connectChain = (): Promise<WatchChain> =>
    (connecting ??= options.connect
      ? options.connect()
      : Promise.resolve().then(() => ({
          provider: required(options.provider, "provider"),
          trusted: required(options.trusted, "trusted"),
          ens: options.ens,
          expected: options.expected,
        })));
  // Sign-ins (when a server asks) are for the chain the verification runs against: known once connected, which a
  // sign-in before the first line then waits for.
  const session =
    options.auditor instanceof SignInSession
      ? options.auditor
      : options.auditor && options.trusted
        ? signInSessionFor(options.auditor, options.trusted.chainId)
        : new SignInSession({
            auditor: options.auditor ?? null,
            chainId: async () => (await connectChain()).trusted.chainId,
          });
  // Asked about an issuer (an ENS name's address, --issuer): new sign-ins only to a certificate it registered.
  const auth = session.hasAuditor
    ? session.withServerCheck(async (origin, fingerprint) => {
        const setup = await connectChain();
        const issuer = setup.expected?.issuer;
        if (issuer)
          await issuerCertificateCheck(new chainLib.ChainView(setup.provider, setup.trusted), issuer)(
            origin,
            fingerprint,
          );
      })
    : session;
  const get = sessionGet(auth);
  // The head first: it needs only TLS and the protocol's schema. Connecting loads ethers and the verifier, whose
  // synchronous loading would hold up the head's TLS handshake and response if it ran meanwhile.
  const first = await fetchHead(url, {}, get);
  if ("head" in first) {
    const { head } = first;
    emit({
      type: "watching",
      instance_hash: head.instance_hash,
      issuer: head.issuer.address,
      model_hash: head.model_hash,
      states: head.entries,
      status: head.status,
    });
  }
  const setup: WatchChain = await connectChain();
  const verify = async (live = false): Promise<VerificationReport> => {
    const report = await pipeline.verifyProtocol({
      input: { url },
      provider: setup.provider,
      trusted: setup.trusted,
      ens: setup.ens,
      optional: options.optional,
      expected: setup.expected,
      auditor: auth,
    });
    // While the instance runs, the verification can read the chain after the protocol it checks: states registered
    // in between fail V7 (on-chain, not in the protocol read). Those are the live comparison's to report, after
    // the grace period a tracker has to publish; the final verification checks completeness for good.
    if (live && report.verdict === "invalid" && report.steps.every((s) => s.status !== "fail" || s.id === "V7")) {
      return { ...report, verdict: "could-not-verify", exit_code: 2 };
    }
    emit(verifiedEvent(report, url));
    return report;
  };
  if (!("head" in first)) {
    // The head could not be read or is not a protocol: the verification says why, step by step, with codes.
    const report = await verify();
    return { report, divergences: report.verdict === "invalid" ? 1 : 0, exitCode: report.exit_code };
  }
  const { head: initial, fingerprint, etag } = first;
  const instance = initial.instance_hash;
  const issuer = initial.issuer.address;
  const sameAddress = (a: string | null | undefined, b: string | null | undefined) => findings.sameAddress(a, b);

  // The verification runs while the states are caught up; it is the final one when the instance has ended.
  const pending = verify(initial.status === "running");
  pending.catch(() => undefined);
  let report: VerificationReport | undefined;
  const reported = new Set<string>();
  let divergences = 0;
  const diverge = (key: string, kind: Extract<WatchEvent, { type: "divergence" }>["kind"], detail: string) => {
    if (reported.has(key)) return;
    reported.add(key);
    divergences += 1;
    emit({ type: "divergence", kind, detail });
  };
  /** Whether what was verified is what is followed; false: reported, stop. */
  const checkReport = (verified: VerificationReport): boolean => {
    if (verified.verdict === "invalid") diverge("invalid", "invalid", "the verification failed (see above)");
    // Not what was asked: following it would watch someone else's instance.
    if (verified.expected?.matched === false) return false;
    if (
      verified.subject &&
      (verified.subject.instance_hash !== instance || !sameAddress(issuer, verified.subject.issuer))
    ) {
      // What is followed must be what is verified: a server can't swap the subject between two reads.
      diverge(
        "swapped",
        "forged",
        `the server served instance ${verified.subject.instance_hash} of ${verified.subject.issuer} at ${url} to the ` +
          `verification, and instance ${instance} of ${issuer} to the watch`,
      );
      return false;
    }
    return true;
  };
  let stopped = false;
  void pending.then((verified) => {
    report = verified;
    if (!checkReport(verified)) stopped = true;
  });

  const protocol = new PageFollower(url, fingerprint, initial, etag, get);
  /** Published states not yet seen on-chain (kept whole: an anchored one is matched through its proof). */
  const unconfirmed = new Map<number, { entry: ProtocolEntry; seenAt: number }>();
  /**
   * States seen on-chain and not yet matched with a published entry, by seq, and those of them not yet published;
   * `registeredCount` counts every state seen on-chain. Matched states are dropped: memory follows what is pending.
   */
  const onChain = new Map<number, HexHash>();
  const unpublished = new Map<number, number>();
  let registeredCount = 0;
  const start = Date.now();
  /**
   * Whether the chain says the instance ended: only the registry's termination event counts. The head's status and
   * an SSE `status` event are the issuer's word (a head saying so must be confirmed by the chain within the grace).
   */
  let terminated = false;
  /** A new head: the same instance and issuer, signed by the issuer; false: reported, stop following. */
  const acceptHead = (head: ProtocolHead): boolean => {
    if (head.instance_hash !== instance || !sameAddress(head.issuer.address, issuer)) {
      diverge(
        "swapped-head",
        "forged",
        `the server now serves instance ${head.instance_hash} of ${head.issuer.address} at ${url}, not ${instance} of ${issuer}`,
      );
      return false;
    }
    const signer = signing.recoverProtocolSigner(head);
    if (!sameAddress(signer, issuer)) {
      diverge(
        `unsigned:${head.accumulator}:${head.status}`,
        "forged",
        `the head served at ${url} (${head.entries} entries, status ${head.status}) is not signed by the issuer ${issuer}`,
      );
      return false;
    }
    return true;
  };

  let wake: (() => void) | undefined;
  let woken = false; // an event arrived while a round ran: the next one starts without waiting for the poll
  let subscription: SseSubscription | undefined;
  let following = true;
  const eventsUrl = url.replace(/\/protocol$/, "/events");
  /** Sign-ins for the event stream since it last opened: one per refusal, so a server refusing every session can't loop. */
  let streamSignIns = 0;
  const follow = (lastEventId = initial.entries > 0 ? String(initial.entries - 1) : undefined) => {
    // The stream carries the session of the head's server (bound to its certificate, which the stream is pinned to).
    const used = auth.sessionFor(eventsUrl, fingerprint);
    const current = sseSubscribe(eventsUrl, {
      fingerprint,
      lastEventId,
      ...(used ? { headers: { authorization: `Bearer ${used.token}` } } : {}),
      onOpen: () => (streamSignIns = 0),
      // An event only says that something changed: what changed is read from the head and its pages.
      onEvent: () => {
        woken = true;
        wake?.();
      },
      onError: (error, fatal) => {
        if (!fatal) return;
        const refused = error instanceof FetchError && (error.status === 401 || error.status === 403);
        if (!refused || streamSignIns > 0) {
          emit({ type: "error", code: error.code, message: error.message });
          return;
        }
        // Refused (no session, or it expired): sign in (or say why not), then subscribe again from the last event.
        streamSignIns += 1;
        auth.answer(eventsUrl, error, used).then(
          () => {
            if (following && subscription === current) follow(current.lastEventId ?? lastEventId);
          },
          (cause: unknown) => {
            const coded = toStatetrailError(cause, "FETCH_FAILED");
            emit({
              type: "error",
              code: coded.code,
              message: coded.message,
              ...(coded.hint ? { hint: coded.hint } : {}),
            });
          },
        );
      },
    });
    subscription = current;
  };

  let terminatedAt: number | undefined;
  /** Since when a head has said the instance ended while the chain says it runs. */
  let headEndedAt: number | undefined;
  /** Since when the instance's creation has not been found from the block the (unverified) first head names. */
  let creationMissingSince: number | undefined;
  /** Whether the published entries are Merkle-anchored; then no state may be registered one by one. */
  let anchoredProtocol = false;
  /** The first state seen registered one by one. */
  let perState: { seq: number; hash: HexHash } | undefined;
  let latestHeadEntries = initial.entries;
  const builder = new rebuild.ChainBuilder(instance);
  let nextBlock = initial.created.block_nr;
  try {
    if (initial.status === "running") follow();
    let head: ProtocolHead | null = acceptHead(initial) ? initial : null;
    if (!head) stopped = true;
    for (let round = 0; !stopped; round++) {
      const roundStart = Date.now();
      // The chain: only the blocks since the last round, streamed into the one ChainBuilder (nothing kept per state).
      const chain = new chainLib.ChainView(setup.provider, setup.trusted);
      const { blockNumber } = await chain.snapshot();
      const fresh = new Map<number, { hash: HexHash; block: number }>();
      for await (const event of chain.instanceEventsStream(issuer, instance, nextBlock)) {
        const state = builder.push(event);
        if (state) fresh.set(state.seq, { hash: state.stateHash, block: state.at.blockNumber });
      }
      nextBlock = Math.max(nextBlock, blockNumber + 1);
      const now = Date.now();
      // The creation block is the first head's word: the instance's creation must be found from there, or the chain
      // read from a later block hides every state registered before it (or, past the tip, every state).
      if (!builder.created) {
        creationMissingSince ??= now;
        if (now - creationMissingSince > graceMs) {
          diverge(
            "created",
            "forged",
            `no creation of instance ${instance} by ${issuer} from block ${initial.created.block_nr} on, where the ` +
              `head served to the watch puts it`,
          );
          stopped = true;
          break;
        }
      }
      // The head again (not in round 0: it was just read), then what is new in its pages.
      if (round > 0 && !stopped) {
        const next = await protocol.poll();
        if (next.kind === "changed") {
          if (acceptHead(next.head)) {
            head = next.head;
            latestHeadEntries = Math.max(latestHeadEntries, head.entries);
          } else stopped = true;
        } else if (next.kind === "error") {
          emit({ type: "error", code: next.code, message: next.message });
        }
      }
      const divergent: Array<() => void> = [];
      // States newly seen on-chain: their `registered` line follows their `published` one (or, not published yet,
      // comes after this round's pages).
      const registeredLines = new Map<number, { hash: HexHash; block: number }>();
      const registered = (seq: number, hash: HexHash, block: number) => {
        onChain.set(seq, hash);
        registeredCount = Math.max(registeredCount, seq + 1);
        registeredLines.set(seq, { hash, block });
      };
      for (const [seq, state] of fresh) {
        registered(seq, state.hash, state.block);
        perState ??= { seq, hash: state.hash };
      }
      let roundAnchors: Awaited<ReturnType<typeof batch.issuerAnchors>> | null = null;
      const anchorsNow = async () =>
        (roundAnchors ??= await batch.issuerAnchors(chain, issuer, initial.created.block_nr));
      /** Compares a published entry with the chain: matched (dropped), or kept until it is or the grace ends. */
      const compare = (entry: ProtocolEntry, seenAt: number, anchors: typeof roundAnchors): void => {
        const seq = entry.seq;
        if (entry.proof !== null && anchors) {
          const at = batch.anchoredAt(anchors, issuer, instance, entry);
          if (at !== null) {
            if (!onChain.has(seq)) registered(seq, entry.state_hash, at);
            unconfirmed.delete(seq); // matched: nothing more is kept of it
            onChain.delete(seq);
            return;
          }
          if (now - seenAt > graceMs) {
            divergent.push(() =>
              diverge(
                `forged:${seq}`,
                "forged",
                `published state #${seq} ${entry.state_hash} is not in a Merkle root the issuer anchored after ${graceMs} ms`,
              ),
            );
          }
          unconfirmed.set(seq, { entry, seenAt });
          return;
        }
        const hash = onChain.get(seq);
        if (hash !== undefined && hash === entry.state_hash) {
          unconfirmed.delete(seq); // matched: nothing more is kept of it
          onChain.delete(seq);
          return;
        }
        unconfirmed.set(seq, { entry, seenAt });
        if (hash !== undefined) {
          divergent.push(() =>
            diverge(
              `forged:${seq}`,
              "forged",
              `published state #${seq} ${entry.state_hash} is not the on-chain state ${hash}`,
            ),
          );
        } else if (now - seenAt > graceMs) {
          divergent.push(() =>
            diverge(
              `forged:${seq}`,
              "forged",
              `published state #${seq} ${entry.state_hash} is not on-chain after ${graceMs} ms`,
            ),
          );
        }
      };
      // Published entries seen before and not yet on-chain: compared again.
      for (const { entry, seenAt } of [...unconfirmed.values()]) {
        compare(entry, seenAt, entry.proof !== null ? await anchorsNow() : null);
      }
      // What is new in the pages, one page at a time: each state published, then registered when it is.
      if (head && !stopped) {
        const problem = await protocol.readNew(head, async (entries) => {
          const anchors = entries.some((entry) => entry.proof !== null) ? await anchorsNow() : null;
          for (const entry of entries) {
            if (entry.proof !== null) anchoredProtocol = true;
            emit({ type: "published", seq: entry.seq, state_name: entry.state_name, state_hash: entry.state_hash });
            compare(entry, now, anchors);
            const line = registeredLines.get(entry.seq);
            if (line) {
              emit({ type: "registered", seq: entry.seq, state_hash: line.hash, block_nr: line.block });
              registeredLines.delete(entry.seq);
            }
          }
        });
        if (problem && "code" in problem) {
          // A page not served (yet, or a network failure): read again on the next poll. One withheld for good is
          // the verification's to report (could not verify), and the exit is never 0 with states unread.
          emit({ type: "error", code: problem.code, message: problem.message });
        } else if (problem) {
          diverge(problem.key, problem.kind, problem.detail);
          stopped = true;
        }
        // A head saying the run ended is the issuer's word: the chain must say so too, within the grace period.
        if (head.status !== "running" && !builder.terminated) {
          headEndedAt ??= now;
          if (now - headEndedAt > graceMs) {
            diverge(
              "head-ended",
              "forged",
              `the head served at ${url} says the instance ${head.status}, the chain says it still runs after ${graceMs} ms`,
            );
            stopped = true;
          }
        }
      }
      // A Merkle-anchored instance registers no state one by one: one that is is on-chain and not published.
      if (anchoredProtocol && perState) {
        diverge(
          "per-state",
          "withheld",
          `on-chain state #${perState.seq} ${perState.hash} is registered one by one for this Merkle-anchored ` +
            `instance: it is not among the published (anchored) states`,
        );
      }
      for (const [seq, line] of [...registeredLines].sort(([x], [y]) => x - y)) {
        emit({ type: "registered", seq, state_hash: line.hash, block_nr: line.block });
      }
      for (const seq of fresh.keys()) {
        if (seq >= protocol.known) unpublished.set(seq, now);
      }
      for (const seq of [...unpublished.keys()]) if (seq < protocol.known) unpublished.delete(seq);
      divergent.forEach((report) => report());
      for (const [seq, seenAt] of unpublished) {
        if (now - seenAt > graceMs) {
          diverge(
            `withheld:${seq}`,
            "withheld",
            `on-chain state #${seq} ${onChain.get(seq)} is not published after ${graceMs} ms`,
          );
        }
      }
      const certificate = await chain.certificateOf(fingerprint, issuer);
      if (certificate.revokedAt !== 0) {
        diverge("revoked", "revoked", `the server certificate ${fingerprint} was revoked at ${certificate.revokedAt}`);
      }
      if (builder.terminated) terminated = true;
      if (terminated) terminatedAt ??= now;
      if (stopped) break;
      // After the end, wait for the last publications (or until a withheld state has been reported).
      if (
        terminatedAt !== undefined &&
        ((registeredCount <= protocol.known && head?.status !== "running") || now - terminatedAt > graceMs + pollMs)
      ) {
        break;
      }
      if (options.timeoutMs !== undefined && now - start > options.timeoutMs) break;
      // Until the next poll, or an SSE event: at once, but never sooner than MIN_ROUND_MS after this round began, so
      // a server sending events without end can't make the watch hammer the auditor's RPC endpoint.
      await new Promise<void>((resolve) => {
        let timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          timer = setTimeout(resolve, Math.max(0, roundStart + Math.min(pollMs, MIN_ROUND_MS) - Date.now()));
        };
        if (woken) wake();
      });
      woken = false;
      wake = undefined;
    }
  } catch (error) {
    const coded = toStatetrailError(error, "VERIFY_INCOMPLETE");
    emit({ type: "error", code: coded.code, message: coded.message, ...(coded.hint ? { hint: coded.hint } : {}) });
    following = false;
    subscription?.close();
    report ??= await pending;
    return { report, divergences, exitCode: divergences > 0 ? 1 : 2 };
  } finally {
    following = false;
    subscription?.close();
  }

  // The verification started with the watch is the final one if the instance had ended by then.
  report = await pending;
  if (stopped) return { report, divergences: Math.max(1, divergences), exitCode: 1 };
  if (terminated && initial.status === "running") {
    report = await verify();
    if (!checkReport(report)) return { report, divergences: Math.max(1, divergences), exitCode: 1 };
  }
  if (terminated) emit({ type: "terminated", status: report.subject?.status ?? "unknown", verdict: report.verdict });
  // Stopped (--timeout) while the instance runs (or the verified protocol still says it runs, whatever the head or
  // the SSE stream said): a state seen after the verification (registered but not yet published, or published but
  // not yet compared) was not verified, and a withheld one may still be inside the grace period. Exit 0 only when
  // the full verification covered every state seen.
  const running = !terminated || report.subject?.status === "running";
  if (running && divergences === 0 && (report.exit_code === 0 || report.exit_code === 3)) {
    const verifiedStates = report.subject?.states ?? 0;
    // Every state seen: read from the pages, registered on-chain, or only counted by the latest head (its pages
    // not read yet).
    const seen = Math.max(protocol.known, registeredCount, latestHeadEntries);
    if (seen > verifiedStates) {
      const unverified = Array.from({ length: Math.min(seen - verifiedStates, 20) }, (_, i) => verifiedStates + i);
      const more = seen - verifiedStates > 20 ? ` and ${seen - verifiedStates - 20} more` : "";
      emit({
        type: "error",
        code: "VERIFY_INCOMPLETE",
        message:
          `the watch stopped while the instance runs: state(s) #${unverified.join(", #")}${more} seen after the ` +
          `verification of ${verifiedStates} state(s) were not verified (a withheld state may still be inside the grace period)`,
        hint: `watch again with a longer --timeout, or run \`statetrail verify ${url}\` once the instance has ended`,
      });
      return { report, divergences, exitCode: 2 };
    }
  }
  return { report, divergences, exitCode: divergences > 0 ? 1 : report.exit_code };
}

/**
 * Why the pages read do not agree with the head or with what was read before: a divergence (the server rewrote,
 * withdrew or forged what it published; nothing more is followed), or a page that could not be read (tried again).
 */
type PageProblem =
  | { key: string; kind: Extract<WatchEvent, { type: "divergence" }>["kind"]; detail: string }
  | { code: string; message: string };

/** The shortest round of a watch woken by SSE events (a poll interval shorter than this is kept). */
const MIN_ROUND_MS = 200;

/**
 * The issuer's side of a watch: the head read again (conditionally, with the ETag the server gave), and the pages
 * read only from where the last read ended, one page at a time (each handed over once it decodes). Keeps the
 * accumulator at the start of the open page and the state hashes of the open page's entries (what was published must
 * come back unchanged; a full page is never read again, and a change to it breaks the next page's accumulator), so
 * its memory does not grow with the instance.
 */
export class PageFollower {
  /** Entries read so far (seq 0 … known - 1). */
  known = 0;
  /** The accumulator after the entries read (the instance hash before the first). */
  private accumulator: HexHash;
  /** The accumulator at the start of the page that holds entry `known` (the open page). */
  private openPageStart: HexHash;
  /** The state hashes of the entries read from the open page (what a full page held is bound by the accumulator). */
  private openHashes: HexHash[] = [];
  private etag: string | null;
  private readonly pageSize: number;
  private readonly instance: HexHash;

  /** Follows the protocol whose first head (not yet read past) is `head`, served with `etag`. */
  constructor(
    private readonly url: string,
    private readonly fingerprint: HexHash,
    head: ProtocolHead,
    etag: string | null,
    private readonly get: HttpGet = pinnedGet,
  ) {
    this.instance = head.instance_hash;
    this.accumulator = head.instance_hash;
    this.openPageStart = head.instance_hash;
    this.pageSize = head.page_size;
    this.etag = etag;
  }

  /** The URL of page `index` (the pages are under the head's URL). */
  pageUrl(index: number): string {
    return `${this.url.replace(/\/+$/, "")}/pages/${index}`;
  }

  /** Reads the head again: unchanged (304, or the same ETag), changed, or an error (reported, then retried). */
  async poll(): Promise<
    { kind: "unchanged" } | { kind: "changed"; head: ProtocolHead } | { kind: "error"; code: string; message: string }
  > {
    const read = await fetchHead(this.url, { fingerprint: this.fingerprint, etag: this.etag }, this.get);
    if ("unchanged" in read) return { kind: "unchanged" };
    if ("code" in read) return { kind: "error", code: read.code, message: read.message };
    this.etag = read.etag;
    return { kind: "changed", head: read.head };
  }

  /**
   * Reads the entries of `head` after the ones already read, page by page from the open page, and hands the new ones
   * of each page to `onPage` once the page decodes, in seq order. Returns what does not agree, if anything: a head
   * with fewer entries or another page size than before, an entry read before that changed, a page that does not
   * decode (nothing of it is taken), or pages that do not end at the head's accumulator (a divergence: the watch
   * stops). A page that can't be fetched is an error to retry: the next read starts from it.
   */
  async readNew(
    head: ProtocolHead,
    onPage: (entries: ProtocolEntry[]) => void | Promise<void>,
  ): Promise<PageProblem | null> {
    if (head.page_size !== this.pageSize) {
      return {
        key: "page-size",
        kind: "forged",
        detail: `the head now says ${head.page_size} entries per page, earlier ${this.pageSize}: published pages were rewritten`,
      };
    }
    if (head.entries < this.known) {
      return {
        key: `shrunk:${head.entries}`,
        kind: "forged",
        detail: `the head now says ${head.entries} entries, but ${this.known} were published before: published states were withdrawn`,
      };
    }
    if (head.entries === this.known) {
      if (head.accumulator === this.accumulator) return null;
      return {
        key: `rewritten:${head.accumulator}`,
        kind: "forged",
        detail: `the head's accumulator changed without a new entry: the ${head.entries} published entries were rewritten`,
      };
    }
    const lastPage = pageCount(head.entries, this.pageSize) - 1;
    for (let index = Math.floor(this.known / this.pageSize); index <= lastPage; index += 1) {
      const wanted = Math.min(this.pageSize, head.entries - index * this.pageSize);
      let bytes: Buffer;
      try {
        const response = await this.get(this.pageUrl(index), {
          fingerprint: this.fingerprint,
          maxBytes: MAX_PAGE_BYTES,
        });
        if (response.status !== 200) throw new Error(`GET ${this.pageUrl(index)}: HTTP ${response.status}`);
        bytes = response.body;
      } catch (error) {
        const coded = toStatetrailError(error, "FETCH_FAILED");
        return { code: coded.code, message: coded.message };
      }
      let page: ReturnType<typeof decodePage>;
      try {
        page = decodePage(bytes, {
          instanceHash: this.instance,
          index,
          accumulatorBefore: this.openPageStart,
          wanted,
        });
      } catch (error) {
        const coded = toStatetrailError(error, "PAGE_INVALID");
        return { key: `page-invalid:${index}:${head.accumulator}`, kind: "forged", detail: coded.message };
      }
      if (page.entries.length < wanted) {
        return {
          key: `page-short:${index}:${head.accumulator}`,
          kind: "forged",
          detail: `page ${index} holds ${page.entries.length} entries, the head says ${wanted}`,
        };
      }
      const fresh: ProtocolEntry[] = [];
      for (const [position, entry] of page.entries.entries()) {
        const seq = index * this.pageSize + position;
        if (entry.seq !== seq) {
          return {
            key: `seq:${seq}:${head.accumulator}`,
            kind: "forged",
            detail: `page ${index} line ${position + 2} says seq ${entry.seq}, where seq ${seq} belongs`,
          };
        }
        if (seq < this.known && entry.state_hash !== this.openHashes[position]) {
          return {
            key: `rewritten:${seq}`,
            kind: "forged",
            detail: `the server changed published state #${seq}: ${this.openHashes[position]}, now ${entry.state_hash}`,
          };
        }
        if (seq >= this.known) fresh.push(entry);
      }
      // This page is taken: the next read starts at the page that holds the next entry (this one while not full).
      this.known = index * this.pageSize + wanted;
      this.accumulator = page.accumulatorAfter;
      if (wanted === this.pageSize) {
        this.openPageStart = page.accumulatorAfter;
        this.openHashes = [];
      } else {
        this.openHashes = page.entries.map((entry) => entry.state_hash);
      }
      await onPage(fresh);
    }
    if (this.accumulator !== head.accumulator) {
      return {
        key: `accumulator:${head.accumulator}`,
        kind: "forged",
        detail: `the pages served end at accumulator ${this.accumulator}, not at the head's ${head.accumulator}`,
      };
    }
    return null;
  }
}

/**
 * The protocol's head as its server serves it (first read, not yet verified), or why it could not be read. With
 * `etag`, asks with If-None-Match: `unchanged` when the server answers 304 Not Modified.
 */
export async function fetchHead(
  url: string,
  conditional: { fingerprint?: HexHash; etag?: string | null } = {},
  get: HttpGet = pinnedGet,
): Promise<
  | { head: ProtocolHead; fingerprint: HexHash; etag: string | null }
  | { unchanged: true }
  | { code: string; message: string }
> {
  try {
    const response = await get(url, { ...conditional, maxBytes: MAX_HEAD_BYTES });
    if (response.status === 304 && conditional.etag) return { unchanged: true };
    if (response.status !== 200) return { code: "FETCH_FAILED", message: `GET ${url}: HTTP ${response.status}` };
    return { head: parseHead(response.body), fingerprint: response.fingerprint, etag: response.etag };
  } catch (error) {
    const coded = toStatetrailError(error, "FETCH_FAILED");
    return { code: coded.code, message: coded.message };
  }
}

/** Largest head and page a watch reads (a head is constant-size; a page holds at most MAX_PAGE_SIZE entries). */
const MAX_HEAD_BYTES = 1024 * 1024;
const MAX_PAGE_BYTES = 32 * 1024 * 1024;

/** One GET of the issuer's server as a watch needs it: pinned to `fingerprint` when given, conditional on `etag`. */
export type HttpGet = (
  url: string,
  options: { fingerprint?: HexHash; etag?: string | null; maxBytes: number },
) => Promise<{ status: number; etag: string | null; body: Buffer; fingerprint: HexHash }>;

/** {@link HttpGet} over TLS with the server certificate captured (pinnedFetch); redirects are not followed. */
export const pinnedGet: HttpGet = (url, options) => getThrough(pinnedFetch, url, options);

/** {@link pinnedGet} signing in when the server asks (auth.ts). */
export function sessionGet(auth: SignInSession): HttpGet {
  return (url, options) => getThrough((target, request) => auth.fetch(target, request), url, options);
}

async function getThrough(
  fetch: typeof pinnedFetch,
  url: string,
  options: Parameters<HttpGet>[1],
): ReturnType<HttpGet> {
  const response = await fetch(url, {
    maxBytes: options.maxBytes,
    ...(options.fingerprint ? { fingerprint: options.fingerprint } : {}),
    ...(options.etag ? { headers: { "if-none-match": options.etag } } : {}),
  });
  const etag = response.headers.etag;
  return {
    status: response.status,
    etag: typeof etag === "string" && etag.length <= 256 ? etag : null,
    body: response.body,
    fingerprint: response.certificate.fingerprint,
  };
}

function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new TypeError(`watchInstance: ${name} (or connect) is required`);
  return value;
}
