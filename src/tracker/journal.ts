import fs from "node:fs";
import path from "node:path";
import { type HexHash } from "../chain/hash";
import { type InstanceRecord, type InstanceStatus } from "../protocol/schema";

/** How states reach the chain (`--anchor`). */
export const ANCHOR_MODES = ["per-state", "multi", "batch"] as const;
export type AnchorMode = (typeof ANCHOR_MODES)[number];

/** The registry call a transaction makes. */
export type JournalAction =
  "createInstance" | "registerState" | "registerStates" | "anchorBatch" | "terminateInstance" | "terminateAnchored";

/**
 * What the journal records, in order, for one instance. The rules a resume relies on:
 * - `entered` (with the exact state bytes) is durable before any transaction carrying the state is sent, so
 *   every state that may be on-chain can be republished, even if its file in `states/` was lost;
 * - an `intent` is durable before its transaction is sent, and names the states it carries (`first_seq` to
 *   `last_seq`) and, for chain appends, the head it extends;
 * - `sent` (transaction hash and nonce) follows once the node accepted it, and `final` once it has the
 *   configured confirmations (these two are written lazily: after a crash, look the intent up on-chain).
 */
export type JournalRecord =
  | {
      type: "instance";
      record: InstanceRecord;
      anchor: AnchorMode;
      engine?: "local" | "aws";
      /** Entries per page of the instance's protocol (absent in journals of protocol version 2). */
      page_size?: number;
    }
  | { type: "entered"; seq: number; state_hash: HexHash; prev_state_hash: HexHash; state_data: string }
  | {
      type: "intent";
      action: JournalAction;
      first_seq?: number;
      last_seq?: number;
      /** The head a registerState(s) extends, or the final head of a termination. */
      prev_state_hash?: HexHash;
      /** anchorBatch: the Merkle root and the number of leaves of all instances in it. */
      root?: string;
      count?: number;
      /** Terminations. */
      status?: Exclude<InstanceStatus, "running">;
      final_head?: HexHash;
      state_count?: number;
      trail?: HexHash;
    }
  | { type: "sent"; action: JournalAction; transaction_hash: string; nonce: number }
  | {
      type: "final";
      action: JournalAction;
      transaction_hash: string;
      block_nr: number;
      first_seq?: number;
      last_seq?: number;
    }
  | { type: "error"; message: string }
  /** A tracker resumed the instance after a crash (src/tracker/resume.ts); `states` were journalled before. */
  | { type: "resume"; states: number };

/**
 * Append-only journal of what the tracker intends and what happened, one JSON object per line. Records
 * are buffered and made durable (written and fsync'd) by {@link commit}, which the tracker calls before
 * every transaction: one fsync covers all the states and intents gathered since the last one.
 */
export class Journal {
  private readonly fd: number;
  private buffered: string[] = [];
  private closed = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.fd = fs.openSync(file, "a");
    // Names the process tracking the instance: a resume leaves alone an instance whose tracker is alive.
    fs.writeFileSync(this.pidFile, `${process.pid}\n`);
  }

  private get pidFile(): string {
    return path.join(path.dirname(this.file), "tracker.pid");
  }

  /** Adds a record; it is durable after the next {@link commit}. */
  record(record: JournalRecord): void {
    if (this.closed) return;
    this.buffered.push(JSON.stringify({ at: new Date().toISOString(), ...record }) + "\n");
    // Records wait at most this long for a commit: states keep being journalled while no transaction can be sent
    // (the chain is slow or away), so a tracker killed then loses none of them.
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.commit();
    }, Journal.MAX_COMMIT_DELAY_MS).unref();
  }

  /** The longest a record waits in memory before it is written and fsync'd. */
  static readonly MAX_COMMIT_DELAY_MS = 250;

  /** Writes and fsyncs the buffered records. */
  commit(): void {
    if (this.closed || this.buffered.length === 0) return;
    const text = this.buffered.join("");
    this.buffered = [];
    fs.writeSync(this.fd, text);
    fs.fsyncSync(this.fd);
  }

  /** Adds a record and makes it durable at once. */
  append(record: JournalRecord): void {
    this.record(record);
    this.commit();
  }

  close(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.commit();
    this.closed = true;
    fs.closeSync(this.fd);
    fs.rmSync(this.pidFile, { force: true });
  }

  static read(file: string): Array<Record<string, unknown>> {
    if (!fs.existsSync(file)) return [];
    return fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return []; // a torn last line after a crash
        }
      });
  }
}
