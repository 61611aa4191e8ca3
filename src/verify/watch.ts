import { type Provider } from "ethers";
import { toStatetrailError } from "../errors";
import { type HexHash } from "../chain/hash";
import { lazy } from "../lazy";
import { pinnedFetch, sseSubscribe, type SseSubscription } from "../net/pinned-fetch";
import { safeParseBounded } from "../protocol/limits";
import { parseProtocol, protocolEntrySchema, type InstanceProtocol, type ProtocolEntry } from "../protocol/schema";
import { type TrustedSetup } from "./chain";
import { type verifyProtocol } from "./pipeline";
import { type EnsReader, type ExpectedSubject, type StepId, type VerificationReport } from "./types";

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
  /** How often the chain is read (default 1 s). */
  pollMs?: number;
  /** Stop after this long even if the instance keeps running (default: never). */
  timeoutMs?: number;
  onEvent: (event: WatchEvent) => void;
}

export interface WatchResult {
  /** The last full verification. */
  report: VerificationReport;
  divergences: number;
  /** 0 terminated valid with no divergence; 1 a divergence or an invalid verdict; 2 could not verify. */
  exitCode: 0 | 1 | 2;
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
  return undefined;
}

/** The `verified` event of a report: its verdict and, unless valid, every step behind it with its code. */
export function verifiedEvent(report: VerificationReport, url: string): Extract<WatchEvent, { type: "verified" }> {
  const problems: WatchProblem[] =
    report.verdict === "valid"
      ? []
      : report.steps
          .filter((s) => s.status === "fail" || (s.required && (s.status === "error" || s.status === "skip")))
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
 * Follows an instance like a Certificate Transparency monitor: the issuer's SSE stream on one side, the
 * registry's events on the other.
 *
 * It first fetches the protocol's head and says what it watches (`watching`, as served, not yet verified), then
 * catches up: a `published` and a `registered` line for every state from the first, in seq order, whether the
 * instance is still running or finished before the watch started; then it follows live. A state on-chain but not
 * published (withheld), published but not on-chain (forged), or a certificate revoked while watching is reported
 * as soon as it is seen (after the grace period a live tracker needs between a receipt and its publication). The
 * whole protocol is verified while catching up (a running instance) and once more on termination; every verdict
 * other than valid names its failing steps, their codes and what to do.
 */
export async function watchInstance(options: WatchOptions): Promise<WatchResult> {
  const graceMs = options.graceMs ?? 10_000;
  const pollMs = options.pollMs ?? 1_000;
  const emit = options.onEvent;
  const url = options.url;
  // The head first: it needs only TLS and the protocol's schema. Connecting loads ethers and the verifier, whose
  // synchronous loading would hold up the head's TLS handshake and response if it ran meanwhile.
  const head = await fetchHead(url);
  if ("protocol" in head) {
    const { protocol } = head;
    emit({
      type: "watching",
      instance_hash: protocol.instance_hash,
      issuer: protocol.issuer.address,
      model_hash: protocol.model_hash,
      states: protocol.instance_protocol.length,
      status: protocol.status,
    });
  }
  const setup: WatchChain = options.connect
    ? await options.connect()
    : {
        provider: required(options.provider, "provider"),
        trusted: required(options.trusted, "trusted"),
        ens: options.ens,
        expected: options.expected,
      };
  const verify = async (live = false): Promise<VerificationReport> => {
    const report = await pipeline.verifyProtocol({
      input: { url },
      provider: setup.provider,
      trusted: setup.trusted,
      ens: setup.ens,
      optional: options.optional,
      expected: setup.expected,
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
  if (!("protocol" in head)) {
    // The head could not be read or is not a protocol: the verification says why, step by step, with codes.
    const report = await verify();
    return { report, divergences: report.verdict === "invalid" ? 1 : 0, exitCode: report.exit_code };
  }
  const { protocol, fingerprint } = head;
  const issuer = protocol.issuer.address;
  const sameAddress = (a: string | null | undefined, b: string | null | undefined) => findings.sameAddress(a, b);

  // The verification runs while the states are caught up; it is the final one when the instance has ended.
  const pending = verify(protocol.status === "running");
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
      (verified.subject.instance_hash !== protocol.instance_hash || !sameAddress(issuer, verified.subject.issuer))
    ) {
      // What is followed must be what is verified: a server can't swap the subject between two reads.
      diverge(
        "swapped",
        "forged",
        `the server served instance ${verified.subject.instance_hash} of ${verified.subject.issuer} at ${url} to the ` +
          `verification, and instance ${protocol.instance_hash} of ${issuer} to the watch`,
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

  // Merkle-anchored entries (`--anchor batch`) are on-chain when their proof reaches a root the issuer anchored.
  const published = new Map<number, { hash: HexHash; seenAt: number; entry: ProtocolEntry }>();
  const start = Date.now();
  for (const entry of protocol.instance_protocol)
    published.set(entry.seq, { hash: entry.state_hash, seenAt: start, entry });
  const onChainSince = new Map<number, { hash: HexHash; seenAt: number }>();
  const announced = new Set<number>(); // seqs whose `published` line was printed
  const publishLine = (entry: ProtocolEntry) => {
    if (announced.has(entry.seq)) return;
    announced.add(entry.seq);
    emit({ type: "published", seq: entry.seq, state_name: entry.state_name, state_hash: entry.state_hash });
  };

  let terminated = protocol.status !== "running";
  let subscription: SseSubscription | undefined;
  let caughtUp = false;
  const early: ProtocolEntry[] = []; // SSE entries that arrive while the first chain read is printed
  const follow = () => {
    subscription = sseSubscribe(url.replace(/\/protocol$/, "/events"), {
      fingerprint,
      lastEventId: protocol.instance_protocol.length > 0 ? String(protocol.head.seq) : undefined,
      onEvent: (event) => {
        if (event.type === "state") {
          const entry = safeParseBounded(protocolEntrySchema, safeJson(event.data)); // a hostile event can't make it slow
          if (!entry.success)
            return diverge(`malformed:${event.id}`, "invalid", `malformed SSE state event ${event.id}`);
          const seen = published.get(entry.data.seq);
          if (seen && seen.hash !== entry.data.state_hash) {
            diverge(`rewritten:${entry.data.seq}`, "forged", `the server changed published state #${entry.data.seq}`);
          }
          if (!seen) {
            published.set(entry.data.seq, { hash: entry.data.state_hash, seenAt: Date.now(), entry: entry.data });
            if (caughtUp) publishLine(entry.data);
            else early.push(entry.data);
          }
        } else if (event.type === "status") {
          terminated = true;
        }
      },
      onError: (error, fatal) => {
        if (fatal) emit({ type: "error", code: error.code, message: error.message });
      },
    });
  };

  let lastChainLength = 0;
  let terminatedAt: number | undefined;
  try {
    if (!terminated) follow();
    for (let round = 0; ; round++) {
      const chain = new chainLib.ChainView(setup.provider, setup.trusted);
      const events = await chain.instanceEvents(issuer, protocol.instance_hash, protocol.created.block_nr);
      const rebuilt = rebuild.rebuildChain(protocol.instance_hash, events);
      const now = Date.now();
      const fresh: Array<{ seq: number; hash: HexHash; block: number }> = [];
      for (const state of rebuilt.states) {
        if (!onChainSince.has(state.seq)) {
          onChainSince.set(state.seq, { hash: state.stateHash, seenAt: now });
          fresh.push({ seq: state.seq, hash: state.stateHash, block: state.at.blockNumber });
        }
      }
      lastChainLength = rebuilt.states.length;
      const anchored = [...published.values()].some(({ entry }) => entry.proof !== null)
        ? await batch.issuerAnchors(chain, issuer, protocol.created.block_nr)
        : null;
      const divergent: Array<() => void> = [];
      for (const [seq, entry] of published) {
        if (anchored && entry.entry.proof !== null) {
          const at = batch.anchoredAt(anchored, issuer, protocol.instance_hash, entry.entry);
          if (at !== null && !onChainSince.has(seq)) {
            onChainSince.set(seq, { hash: entry.hash, seenAt: now });
            fresh.push({ seq, hash: entry.hash, block: at });
          } else if (at === null && now - entry.seenAt > graceMs) {
            divergent.push(() =>
              diverge(
                `forged:${seq}`,
                "forged",
                `published state #${seq} ${entry.hash} is not in a Merkle root the issuer anchored after ${graceMs} ms`,
              ),
            );
          }
          continue;
        }
        const onChain = onChainSince.get(seq);
        if (onChain && onChain.hash !== entry.hash) {
          divergent.push(() =>
            diverge(
              `forged:${seq}`,
              "forged",
              `published state #${seq} ${entry.hash} is not the on-chain state ${onChain.hash}`,
            ),
          );
        } else if (!onChain && now - entry.seenAt > graceMs) {
          divergent.push(() =>
            diverge(
              `forged:${seq}`,
              "forged",
              `published state #${seq} ${entry.hash} is not on-chain after ${graceMs} ms`,
            ),
          );
        }
      }
      // Every state in seq order: published (when it is), then registered. The first round catches up on all
      // that happened before the watch; later rounds print what is new.
      fresh.sort((a, b) => a.seq - b.seq);
      if (round === 0) {
        const last = Math.max(-1, ...published.keys(), ...fresh.map((f) => f.seq));
        const registeredAt = new Map(fresh.map((f) => [f.seq, f]));
        for (let seq = 0; seq <= last; seq++) {
          const entry = published.get(seq);
          if (entry) publishLine(entry.entry);
          const registered = registeredAt.get(seq);
          if (registered) {
            emit({ type: "registered", seq, state_hash: registered.hash, block_nr: registered.block });
          }
        }
        caughtUp = true;
        for (const entry of early.splice(0).sort((a, b) => a.seq - b.seq)) publishLine(entry);
      } else {
        for (const f of fresh) emit({ type: "registered", seq: f.seq, state_hash: f.hash, block_nr: f.block });
      }
      divergent.forEach((report) => report());
      for (const [seq, state] of onChainSince) {
        if (!published.has(seq) && now - state.seenAt > graceMs) {
          diverge(
            `withheld:${seq}`,
            "withheld",
            `on-chain state #${seq} ${state.hash} is not published after ${graceMs} ms`,
          );
        }
      }
      const certificate = await chain.certificateOf(fingerprint, issuer);
      if (certificate.revokedAt !== 0) {
        diverge("revoked", "revoked", `the server certificate ${fingerprint} was revoked at ${certificate.revokedAt}`);
      }
      if (rebuilt.terminated) terminated = true;
      if (terminated) terminatedAt ??= now;
      if (stopped) break;
      // After the end, wait for the last publications (or until a withheld state has been reported).
      if (terminatedAt !== undefined && (lastChainLength <= published.size || now - terminatedAt > graceMs + pollMs)) {
        break;
      }
      if (options.timeoutMs !== undefined && now - start > options.timeoutMs) break;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  } catch (error) {
    const coded = toStatetrailError(error, "VERIFY_INCOMPLETE");
    emit({ type: "error", code: coded.code, message: coded.message, ...(coded.hint ? { hint: coded.hint } : {}) });
    subscription?.close();
    report ??= await pending;
    return { report, divergences, exitCode: divergences > 0 ? 1 : 2 };
  } finally {
    subscription?.close();
  }

  // The verification started with the watch is the final one if the instance had ended by then.
  const first = await pending;
  report = first;
  if (stopped) return { report, divergences: Math.max(1, divergences), exitCode: 1 };
  if (terminated && protocol.status === "running") {
    report = await verify();
    if (!checkReport(report)) return { report, divergences: Math.max(1, divergences), exitCode: 1 };
  }
  if (terminated) emit({ type: "terminated", status: report.subject?.status ?? "unknown", verdict: report.verdict });
  // Stopped (--timeout) while the instance runs (or the verified protocol still says it runs, whatever the head or
  // the SSE stream said): a state seen after the verification (registered but not yet published, or published but
  // not yet compared) was not verified, and a withheld one may still be inside the grace period. Exit 0 only when
  // the full verification covered every state seen.
  const running = !terminated || report.subject?.status === "running";
  if (running && divergences === 0 && report.exit_code === 0) {
    const verifiedStates = report.subject?.states ?? 0;
    const unverified = [...new Set([...published.keys(), ...onChainSince.keys()])]
      .filter((seq) => seq >= verifiedStates)
      .sort((a, b) => a - b);
    if (unverified.length > 0) {
      emit({
        type: "error",
        code: "VERIFY_INCOMPLETE",
        message:
          `the watch stopped while the instance runs: state(s) #${unverified.join(", #")} seen after the ` +
          `verification of ${verifiedStates} state(s) were not verified (a withheld state may still be inside the grace period)`,
        hint: `watch again with a longer --timeout, or run \`statetrail verify ${url}\` once the instance has ended`,
      });
      return { report, divergences, exitCode: 2 };
    }
  }
  return { report, divergences, exitCode: divergences > 0 ? 1 : report.exit_code };
}

/** The protocol's head as its server serves it (first read, not yet verified), or why it could not be read. */
export async function fetchHead(
  url: string,
): Promise<{ protocol: InstanceProtocol; fingerprint: HexHash } | { code: string; message: string }> {
  try {
    const response = await pinnedFetch(url, { maxBytes: 64 * 1024 * 1024 });
    if (response.status !== 200) return { code: "FETCH_FAILED", message: `GET ${url}: HTTP ${response.status}` };
    return {
      protocol: parseProtocol(response.body.toString("utf8")),
      fingerprint: response.certificate.fingerprint,
    };
  } catch (error) {
    const coded = toStatetrailError(error, "FETCH_FAILED");
    return { code: coded.code, message: coded.message };
  }
}

function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new TypeError(`watchInstance: ${name} (or connect) is required`);
  return value;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
