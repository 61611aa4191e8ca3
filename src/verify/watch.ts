import { type Provider } from "ethers";
import { toStatetrailError } from "../errors";
import { type HexHash } from "../chain/hash";
import { pinnedFetch, sseSubscribe, type SseSubscription } from "../net/pinned-fetch";
import { safeParseBounded } from "../protocol/limits";
import { parseProtocol, protocolEntrySchema, type InstanceProtocol, type ProtocolEntry } from "../protocol/schema";
import { anchoredAt, issuerAnchors } from "./batch";
import { ChainView, type TrustedSetup } from "./chain";
import { verifyProtocol } from "./pipeline";
import { rebuildChain } from "./rebuild";
import { sameAddress } from "./findings";
import { type EnsReader, type ExpectedSubject, type VerificationReport } from "./types";

/** What `statetrail watch` reports, one event per line. */
export type WatchEvent =
  | { type: "verified"; verdict: VerificationReport["verdict"]; failed: string[]; states: number }
  | { type: "published"; seq: number; state_name: string; state_hash: HexHash }
  | { type: "registered"; seq: number; state_hash: HexHash; block_nr: number }
  | { type: "divergence"; kind: "withheld" | "forged" | "revoked" | "invalid"; detail: string }
  | { type: "terminated"; status: string; verdict: VerificationReport["verdict"] }
  | { type: "error"; code: string; message: string };

export interface WatchOptions {
  /** The protocol URL (https). */
  url: string;
  provider: Provider;
  trusted: TrustedSetup;
  ens?: EnsReader | null;
  optional?: Parameters<typeof verifyProtocol>[0]["optional"];
  /** What the auditor asked about (the issuer of an ENS name, `--issuer`, `--instance`): see verifyProtocol. */
  expected?: ExpectedSubject;
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

/**
 * Follows an instance like a Certificate Transparency monitor: the issuer's SSE stream on one side, the
 * registry's events on the other. A state on-chain but not published (withheld), published but not on-chain
 * (forged), or a certificate revoked while watching is reported as soon as it is seen (after the grace
 * period a live tracker needs between a receipt and its publication). On termination the whole protocol
 * is verified once more.
 */
export async function watchInstance(options: WatchOptions): Promise<WatchResult> {
  const graceMs = options.graceMs ?? 10_000;
  const pollMs = options.pollMs ?? 1_000;
  const emit = options.onEvent;
  const verify = async (): Promise<VerificationReport> => {
    const report = await verifyProtocol({
      input: { url: options.url },
      provider: options.provider,
      trusted: options.trusted,
      ens: options.ens,
      optional: options.optional,
      expected: options.expected,
    });
    emit({
      type: "verified",
      verdict: report.verdict,
      failed: report.steps.filter((s) => s.status === "fail").map((s) => s.id),
      states: report.subject?.states ?? 0,
    });
    return report;
  };

  let report = await verify();
  if (!report.subject) return { report, divergences: 0, exitCode: report.exit_code };
  // Not what was asked: following it would watch someone else's instance.
  if (report.expected?.matched === false) return { report, divergences: 1, exitCode: 1 };
  const first = await pinnedFetch(options.url, { maxBytes: 64 * 1024 * 1024 });
  if (first.status !== 200) {
    emit({ type: "error", code: "FETCH_FAILED", message: `GET ${options.url}: HTTP ${first.status} (not followed)` });
    return { report, divergences: 0, exitCode: 2 };
  }
  const fingerprint = first.certificate.fingerprint;
  const protocol: InstanceProtocol = parseProtocol(first.body.toString("utf8"));
  const issuer = protocol.issuer.address;
  // What is followed must be what was just verified: a server can't swap the subject between two reads.
  if (protocol.instance_hash !== report.subject.instance_hash || !sameAddress(issuer, report.subject.issuer)) {
    emit({
      type: "divergence",
      kind: "forged",
      detail: `the server now serves instance ${protocol.instance_hash} of ${issuer} at ${options.url}, not the verified one`,
    });
    return { report, divergences: 1, exitCode: 1 };
  }

  // Merkle-anchored entries (`--anchor batch`) are on-chain when their proof reaches a root the issuer anchored.
  const published = new Map<number, { hash: HexHash; seenAt: number; entry: ProtocolEntry }>();
  for (const entry of protocol.instance_protocol)
    published.set(entry.seq, { hash: entry.state_hash, seenAt: Date.now(), entry });
  const onChainSince = new Map<number, { hash: HexHash; seenAt: number }>();
  const reported = new Set<string>();
  let divergences = report.verdict === "invalid" ? 1 : 0;
  const diverge = (key: string, kind: Extract<WatchEvent, { type: "divergence" }>["kind"], detail: string) => {
    if (reported.has(key)) return;
    reported.add(key);
    divergences += 1;
    emit({ type: "divergence", kind, detail });
  };

  let terminated = protocol.status !== "running";
  let subscription: SseSubscription | undefined;
  if (!terminated) {
    subscription = sseSubscribe(options.url.replace(/\/protocol$/, "/events"), {
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
            emit({
              type: "published",
              seq: entry.data.seq,
              state_name: entry.data.state_name,
              state_hash: entry.data.state_hash,
            });
          }
        } else if (event.type === "status") {
          terminated = true;
        }
      },
      onError: (error, fatal) => {
        if (fatal) emit({ type: "error", code: error.code, message: error.message });
      },
    });
  }

  const started = Date.now();
  let lastChainLength = 0;
  let terminatedAt: number | undefined;
  try {
    for (;;) {
      const chain = new ChainView(options.provider, options.trusted);
      const events = await chain.instanceEvents(issuer, protocol.instance_hash, protocol.created.block_nr);
      const rebuilt = rebuildChain(protocol.instance_hash, events);
      const now = Date.now();
      for (const state of rebuilt.states) {
        if (!onChainSince.has(state.seq)) {
          onChainSince.set(state.seq, { hash: state.stateHash, seenAt: now });
          emit({ type: "registered", seq: state.seq, state_hash: state.stateHash, block_nr: state.at.blockNumber });
        }
      }
      lastChainLength = rebuilt.states.length;
      const anchored = [...published.values()].some(({ entry }) => entry.proof !== null)
        ? await issuerAnchors(chain, issuer, protocol.created.block_nr)
        : null;
      for (const [seq, entry] of published) {
        if (anchored && entry.entry.proof !== null) {
          const at = anchoredAt(anchored, issuer, protocol.instance_hash, entry.entry);
          if (at !== null && !onChainSince.has(seq)) {
            onChainSince.set(seq, { hash: entry.hash, seenAt: now });
            emit({ type: "registered", seq, state_hash: entry.hash, block_nr: at });
          } else if (at === null && now - entry.seenAt > graceMs) {
            diverge(
              `forged:${seq}`,
              "forged",
              `published state #${seq} ${entry.hash} is not in a Merkle root the issuer anchored after ${graceMs} ms`,
            );
          }
          continue;
        }
        const onChain = onChainSince.get(seq);
        if (onChain && onChain.hash !== entry.hash) {
          diverge(
            `forged:${seq}`,
            "forged",
            `published state #${seq} ${entry.hash} is not the on-chain state ${onChain.hash}`,
          );
        } else if (!onChain && now - entry.seenAt > graceMs) {
          diverge(
            `forged:${seq}`,
            "forged",
            `published state #${seq} ${entry.hash} is not on-chain after ${graceMs} ms`,
          );
        }
      }
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
      // After the end, wait for the last publications (or until a withheld state has been reported).
      if (terminatedAt !== undefined && (lastChainLength <= published.size || now - terminatedAt > graceMs + pollMs)) {
        break;
      }
      if (options.timeoutMs !== undefined && now - started > options.timeoutMs) break;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  } catch (error) {
    const coded = toStatetrailError(error, "VERIFY_INCOMPLETE");
    emit({ type: "error", code: coded.code, message: coded.message });
    subscription?.close();
    return { report, divergences, exitCode: divergences > 0 ? 1 : 2 };
  } finally {
    subscription?.close();
  }

  report = await verify();
  if (report.verdict === "invalid") diverge("final", "invalid", "the final verification failed");
  if (terminated) emit({ type: "terminated", status: report.subject?.status ?? "unknown", verdict: report.verdict });
  return { report, divergences, exitCode: divergences > 0 ? 1 : report.exit_code };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
