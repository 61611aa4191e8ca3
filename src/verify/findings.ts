import { getAddress, isAddress } from "ethers";
import { toStatetrailError, type ErrorCode } from "../errors";
import { type StepStatus } from "./types";

/** What a step returns; the pipeline adds id, title, required flag and timing. */
export interface StepOutcome {
  status: StepStatus;
  detail: string;
  problems?: string[];
  code?: ErrorCode;
}

/** Longest list of problems a step reports; the rest are counted. */
export const MAX_PROBLEMS = 50;

/**
 * Collects a step's findings. A failure (evidence against the protocol) outranks an error (something
 * could not be checked): a step that found both fails.
 */
export class Findings {
  /** The first {@link KEPT} failures and errors (a million-state protocol can't make a step keep a million). */
  readonly failures: string[] = [];
  readonly errors: string[] = [];
  /** How many there were in all. */
  failureCount = 0;
  errorCount = 0;
  private readonly notes: string[] = [];
  private errorCode?: ErrorCode;
  private failCode?: ErrorCode;

  fail(message: string, code?: ErrorCode): void {
    this.failureCount += 1;
    if (this.failures.length < KEPT) this.failures.push(message);
    this.failCode ??= code;
  }

  /** Records what could not be checked; `cause` may be a thrown value or a message. */
  error(cause: unknown, prefix?: string): void {
    const error = typeof cause === "string" ? undefined : toStatetrailError(cause, "VERIFY_INCOMPLETE");
    const message = error ? `${error.code}: ${error.message}` : String(cause);
    this.errorCount += 1;
    if (this.errors.length < KEPT) this.errors.push(prefix ? `${prefix}: ${message}` : message);
    this.errorCode ??= error?.code ?? "VERIFY_INCOMPLETE";
  }

  note(message: string): void {
    this.notes.push(message);
  }

  get failed(): boolean {
    return this.failureCount > 0;
  }

  outcome(passDetail: string): StepOutcome {
    if (this.failureCount > 0) {
      return {
        status: "fail",
        detail: summarize(this.failures, this.failureCount),
        problems: capCounted([...this.failures, ...this.errors], this.failureCount + this.errorCount),
        code: this.failCode,
      };
    }
    if (this.errorCount > 0) {
      return {
        status: "error",
        detail: summarize(this.errors, this.errorCount),
        problems: capCounted(this.errors, this.errorCount),
        code: this.errorCode,
      };
    }
    return { status: "pass", detail: [passDetail, ...this.notes].join("; "), problems: [] };
  }
}

/** Failures (and errors) kept per step; the rest are counted. */
const KEPT = 200;

function summarize(list: readonly string[], count = list.length): string {
  return count === 1 ? list[0] : `${list[0]} (and ${count - 1} more)`;
}

/** The first problems of `list`, which holds the first of `total`. */
function capCounted(list: readonly string[], total: number, max = MAX_PROBLEMS): string[] {
  if (total <= max && list.length === total) return [...list];
  const shown = list.slice(0, max);
  return [...shown, `… and ${total - shown.length} more`];
}

export function cap(list: readonly string[], max = MAX_PROBLEMS): string[] {
  if (list.length <= max) return [...list];
  return [...list.slice(0, max), `… and ${list.length - max} more`];
}

/** Maps `items` through `fn` with at most `limit` calls in flight, keeping the order. */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

export function sameAddress(a: string | null | undefined, b: string | null | undefined): boolean {
  if (!a || !b) return false;
  const left = checksummed(a);
  return left !== null && left === checksummed(b);
}

/**
 * getAddress of a valid address, else null; remembered, since V6 compares every entry's client_address
 * (the same string thousands of times) and each check computes keccak256 twice.
 */
const checksums = new Map<string, string | null>();
function checksummed(address: string): string | null {
  let known = checksums.get(address);
  if (known === undefined) {
    known = isAddress(address) ? getAddress(address) : null;
    if (checksums.size >= 1024) checksums.clear();
    checksums.set(address, known);
  }
  return known;
}

/** Unix seconds as an ISO 8601 UTC time. */
export function iso(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : date.toISOString().replace(".000Z", "Z");
}

/** A hash shortened for one-line details: `2f50a1b2…`. */
export function short(hash: string): string {
  const bare = hash.startsWith("0x") ? hash.slice(2) : hash;
  return bare.length > 12 ? `${hash.startsWith("0x") ? "0x" : ""}${bare.slice(0, 10)}…` : hash;
}
