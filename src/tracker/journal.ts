import fs from "node:fs";
import path from "node:path";

/**
 * Append-only, fsync'd journal of what the tracker intends and what happened, one JSON object per
 * line. It records intent before each transaction and the outcome after, so a crash leaves a record
 * to reconcile with the on-chain head.
 */
export class Journal {
  private readonly fd: number;

  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.fd = fs.openSync(file, "a");
  }

  append(record: Record<string, unknown>): void {
    fs.writeSync(this.fd, JSON.stringify({ at: new Date().toISOString(), ...record }) + "\n");
    fs.fsyncSync(this.fd);
  }

  close(): void {
    fs.closeSync(this.fd);
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
