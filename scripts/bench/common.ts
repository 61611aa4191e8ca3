import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { StatetrailError } from "../../src/errors";
import { certificateInfo } from "../../src/identity/certificate";
import { Home } from "../../src/store/home";
import { type Fetcher } from "../../src/verify/types";

/** The repository root. */
export const ROOT = path.resolve(__dirname, "..", "..");

/** One progress line on stderr, rewritten in place on a terminal. */
export class Progress {
  private readonly started = Date.now();
  private last = "";

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** Shows `text` (with the elapsed time); throttled for updates within a step. */
  set(text: string, force = false): void {
    const line = `[bench ${((Date.now() - this.started) / 1000).toFixed(0).padStart(3)} s] ${text}`;
    if (!force && line === this.last) return;
    this.last = line;
    if (this.stream.isTTY) this.stream.write(`\r\x1b[2K${line.slice(0, (this.stream.columns ?? 120) - 1)}`);
    else this.stream.write(line + "\n");
  }

  done(): void {
    if (this.stream.isTTY) this.stream.write("\n");
  }

  get seconds(): number {
    return (Date.now() - this.started) / 1000;
  }
}

/** A throttled progress callback for counts (at most ~5 updates a second). */
export function counter(progress: Progress, label: (done: number) => string): (done: number) => void {
  let shown = 0;
  return (done) => {
    const now = Date.now();
    if (now - shown < 200) return;
    shown = now;
    progress.set(label(done));
  };
}

export interface Machine {
  cpu: string;
  cores: number;
  ram_gib: number;
  os: string;
  node: string;
  hardhat: string;
  solc: string;
  /** 1-minute load average when the run started (others' work on the machine skews speed figures). */
  load_average: number;
}

export function machine(): Machine {
  const cpus = os.cpus();
  const version = (name: string): string =>
    (
      JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`, { paths: [ROOT] }), "utf8")) as {
        version: string;
      }
    ).version;
  return {
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    ram_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    hardhat: version("hardhat"),
    solc: version("solc"),
    load_average: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

/**
 * A fetcher that serves an issuer's data directory the way its HTTPS server does (`/models/<hash>`,
 * `/states/<hash>`, `/instances/<hash>/{input,protocol}`), read from the files, presenting the issuer's TLS
 * certificate: the verifier's work without the network's.
 */
export function fileFetcher(homeDir: string): Fetcher {
  const home = new Home(homeDir);
  const pem = fs.readFileSync(home.path("tls", "cert.pem"), "utf8");
  const info = certificateInfo(pem);
  const certificate = { fingerprint: info.fingerprint, notBefore: info.notBefore, notAfter: info.notAfter };
  return async (url, request) => {
    const parts = new URL(url).pathname.split("/").filter(Boolean);
    let file: string | null = null;
    if (parts[0] === "models" && parts.length === 2) file = home.modelFile(parts[1]);
    else if (parts[0] === "states" && parts.length === 2) file = home.stateFile(parts[1]);
    else if (parts[0] === "instances" && parts.length === 3 && parts[2] === "input") file = home.inputFile(parts[1]);
    else if (parts[0] === "instances" && parts.length === 3 && parts[2] === "protocol") {
      file = home.protocolFile(parts[1]);
    }
    if (file === null || !fs.existsSync(file)) {
      throw new StatetrailError("FETCH_FAILED", `GET ${url}: HTTP 404`);
    }
    const bytes = fs.readFileSync(file); // small files: one blocking read beats fs.promises' four round trips
    if (bytes.length > request.maxBytes) throw new StatetrailError("FETCH_FAILED", `${url} is too large`);
    return { bytes, certificate };
  };
}

/** `n` with thousands separators. */
export function int(n: number): string {
  return Math.round(n).toLocaleString("en");
}
