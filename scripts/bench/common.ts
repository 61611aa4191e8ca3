import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { StatetrailError } from "../../src/errors";
import { certificateInfo } from "../../src/identity/certificate";
import { Home } from "../../src/store/home";
import { type Fetched, type Fetcher } from "../../src/verify/types";

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
  /** Where the issuer's data directory is made (BENCH_DATA_DIR; by default /dev/shm when it is a tmpfs). */
  data_dir: { path: string; filesystem: string; why: string };
}

/**
 * Where the benchmark's data directory goes. A 1,000,000-state instance is 1,000,000 state files: on this machine's
 * disk (ext4 mounted with `discard`) each unlink waits for a discard, so removing an instance's files took minutes
 * per 100,000; a tmpfs (/dev/shm) removes them at once. The verifier reads them through the fetcher either way,
 * from the page cache (just written).
 */
function dataDir(): Machine["data_dir"] {
  const chosen = process.env.BENCH_DATA_DIR;
  const filesystem = (dir: string): string => {
    try {
      const mounts = fs
        .readFileSync("/proc/mounts", "utf8")
        .split("\n")
        .map((line) => line.split(" "))
        .filter(
          (fields) => fields.length > 2 && (dir === fields[1] || dir.startsWith(fields[1].replace(/\/$/, "") + "/")),
        )
        .sort((a, b) => b[1].length - a[1].length);
      return mounts[0]
        ? `${mounts[0][2]} (${mounts[0][1]}${mounts[0][3].includes("discard") ? ", discard" : ""})`
        : "unknown";
    } catch {
      return "unknown";
    }
  };
  if (chosen) return { path: chosen, filesystem: filesystem(chosen), why: "BENCH_DATA_DIR" };
  const shm = "/dev/shm";
  const free = (() => {
    try {
      const stat = fs.statfsSync(shm);
      return stat.bavail * stat.bsize;
    } catch {
      return 0;
    }
  })();
  if (filesystem(shm).startsWith("tmpfs") && free > 12 * 2 ** 30) {
    return {
      path: shm,
      filesystem: filesystem(shm),
      why: "a million state files written and removed at once",
    };
  }
  return { path: os.tmpdir(), filesystem: filesystem(os.tmpdir()), why: "the temporary directory" };
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
    data_dir: dataDir(),
  };
}

/** A state hash as the issuer's server accepts it in a URL. */
const HEX_HASH = /^[0-9a-f]{64}$/;

/** A page index as the issuer's server accepts it: a decimal integer without sign or leading zero. */
const PAGE_INDEX = /^(0|[1-9][0-9]*)$/;

/**
 * A fetcher that serves an issuer's data directory the way its HTTPS server does (`/models/<hash>`,
 * `/states/<hash>`, `/instances/<hash>/input`, the signed head at `/instances/<hash>/protocol` and page k at
 * `/instances/<hash>/protocol/pages/<k>`: its whole lines, up to the last newline), read from the files,
 * presenting the issuer's TLS certificate: the verifier's work without the network's. `onRead` sees each response's
 * size (the benchmark counts the bytes a verification reads).
 */
export function fileFetcher(homeDir: string, onRead?: (url: string, bytes: number) => void): Fetcher {
  const home = new Home(homeDir);
  const pem = fs.readFileSync(home.path("tls", "cert.pem"), "utf8");
  const info = certificateInfo(pem);
  const certificate = { fingerprint: info.fingerprint, notBefore: info.notBefore, notAfter: info.notAfter };
  const notFound = (url: string): StatetrailError => new StatetrailError("FETCH_FAILED", `GET ${url}: HTTP 404`);
  const statesPrefix = home.path("states") + path.sep;
  return async (url, request) => {
    // A state document's URL is `https://<host>/states/<hash>` (a million of them): its file found without a URL
    // object or a path join (a microsecond each); any other URL parsed.
    const states = url.indexOf("/states/", url.indexOf("//") + 2);
    const hash = states > 0 ? url.slice(states + 8) : "";
    if (hash.length === 64 && url.indexOf("/", url.indexOf("//") + 2) === states && HEX_HASH.test(hash)) {
      return answer(url, request.maxBytes, statesPrefix + hash + ".jsonl", false);
    }
    const parts = new URL(url).pathname.split("/").filter(Boolean);
    let file: string | null = null;
    let page = false;
    if (parts[0] === "models" && parts.length === 2) file = home.modelFile(parts[1]);
    else if (parts[0] === "states" && parts.length === 2) file = home.stateFile(parts[1]);
    else if (parts[0] === "instances" && parts.length === 3 && parts[2] === "input")
      file = home.inputDocumentFile(parts[1]);
    else if (parts[0] === "instances" && parts.length === 3 && parts[2] === "protocol") {
      file = home.protocolFile(parts[1]);
    } else if (
      parts[0] === "instances" &&
      parts.length === 5 &&
      parts[2] === "protocol" &&
      parts[3] === "pages" &&
      PAGE_INDEX.test(parts[4])
    ) {
      file = home.pageFile(parts[1], Number(parts[4]));
      page = true;
    }
    if (file === null) throw notFound(url);
    return answer(url, request.maxBytes, file, page);
  };

  /** The response to `url`: the file's bytes (a page's whole lines), as the server sends them. */
  function answer(url: string, maxBytes: number, file: string, page: boolean): Fetched {
    let bytes: Buffer;
    try {
      bytes = readFile(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") throw notFound(url);
      throw error;
    }
    if (page) {
      // Whole lines only, as the server serves a page (an append may be under way); none yet: not served.
      const end = bytes.lastIndexOf(0x0a);
      if (end < 0) throw notFound(url);
      bytes = bytes.subarray(0, end + 1);
    }
    if (bytes.length > maxBytes) throw new StatetrailError("FETCH_FAILED", `${url} is too large`);
    onRead?.(url, bytes.length);
    return { bytes, certificate };
  }
}

/** {@link readFile}'s buffer: a state document fits in it. */
const scratch = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * A file's bytes, as fs.readFileSync gives them, in one blocking open, read and close (small files: one blocking read
 * beats fs.promises' four round trips): read into a buffer kept from call to call and copied out at its size, with no
 * stat and no buffer made before the size is known (19 µs a file with readFileSync, 12 µs so, on this machine's
 * tmpfs: seven seconds of a million state documents). A file that fills the buffer is read again whole.
 */
function readFile(file: string): Buffer {
  const fd = fs.openSync(file, "r");
  let size: number;
  try {
    size = fs.readSync(fd, scratch, 0, scratch.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  return size < scratch.length ? Buffer.from(scratch.subarray(0, size)) : fs.readFileSync(file);
}

/** `n` with thousands separators. */
export function int(n: number): string {
  return Math.round(n).toLocaleString("en");
}
