import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { StatetrailError } from "../errors";
import { PACKAGE_ROOT } from "../package-root";
import { probeChainId } from "./provider";

/** The repository root: hardhat.config.ts lives here, and `hardhat node` runs here. */
export const REPO_ROOT = PACKAGE_ROOT;

/** The environment variable hardhat.config.ts reads to give the `hardhat` network another chain id. */
export const CHAIN_ID_VARIABLE = "STATETRAIL_HARDHAT_CHAIN_ID";

export interface LocalNode {
  url: string;
  chainId: number;
  /** Process id of the node when this process started it; null for a node found running. */
  pid: number | null;
  /** Stops the node if this process started it (kills its process group); a no-op for a node found running. */
  stop(): Promise<void>;
  /** The node's last output lines (for error reports). */
  output(): string;
}

export interface StartNodeOptions {
  /** Default 8545. Use {@link freePort} for tests. */
  port?: number;
  /** Default 127.0.0.1 (loopback only). */
  hostname?: string;
  /** Chain id of the node (default 31337); passed to hardhat.config.ts as STATETRAIL_HARDHAT_CHAIN_ID. */
  chainId?: number;
  /** Working directory with hardhat.config.ts; default the repository root. */
  cwd?: string;
  /** How long the node may take to answer eth_chainId. Default 60 s. */
  timeoutMs?: number;
  /** Appends the node's output to this file. */
  logFile?: string;
}

/**
 * Starts a local chain as a real `hardhat node` child process (the same as `npx hardhat node --port N
 * --hostname 127.0.0.1`, run with this Node binary and Hardhat's own CLI entry instead of through npx), waits
 * until eth_chainId answers, and returns its URL and a `stop()` that kills the process group. The node runs in
 * its own process group so that `stop()` takes down anything it spawned; it is also killed when this process
 * exits.
 */
export async function startNode(options: StartNodeOptions = {}): Promise<LocalNode> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 8545;
  const url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  const cwd = options.cwd ?? REPO_ROOT;
  const timeoutMs = options.timeoutMs ?? 60_000;

  if (await portAnswers(url)) {
    throw new StatetrailError("INVALID_ARGUMENT", `something already serves JSON-RPC at ${url}`, {
      hint: "reuse it (findRunningNode / --rpc-url) or choose another port",
    });
  }

  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.HARDHAT_NETWORK;
  if (options.chainId !== undefined) env[CHAIN_ID_VARIABLE] = String(options.chainId);
  else delete env[CHAIN_ID_VARIABLE];

  const hardhatCli = path.join(path.dirname(resolveHardhat(cwd)), "internal", "cli", "bootstrap.js");
  const child = spawn(process.execPath, [hardhatCli, "node", "--port", String(port), "--hostname", hostname], {
    cwd,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tail = new OutputTail(options.logFile);
  child.stdout?.on("data", (chunk: Buffer) => tail.push(chunk));
  child.stderr?.on("data", (chunk: Buffer) => tail.push(chunk));

  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exitPromise = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  const killOnExit = () => killGroup(child, "SIGKILL");
  process.once("exit", killOnExit);

  const stop = async () => {
    process.removeListener("exit", killOnExit);
    if (exited) return;
    killGroup(child, "SIGTERM");
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
    await exitPromise;
    clearTimeout(timer);
    tail.close();
  };

  const deadline = Date.now() + timeoutMs;
  let chainId: number | null = null;
  while (chainId === null) {
    if (exited) {
      process.removeListener("exit", killOnExit);
      tail.close();
      const { code, signal } = exited;
      throw new StatetrailError(
        "RPC_UNREACHABLE",
        `hardhat node exited (${signal ?? `code ${code}`}) before answering at ${url}`,
        {
          hint: /EADDRINUSE/.test(tail.text())
            ? `port ${port} is in use: choose another --port`
            : `its output:\n${tail.text()}`,
        },
      );
    }
    if (Date.now() > deadline) {
      await stop();
      throw new StatetrailError("RPC_UNREACHABLE", `hardhat node did not answer at ${url} within ${timeoutMs} ms`, {
        hint: `its output:\n${tail.text()}`,
      });
    }
    try {
      chainId = await probeChainId(url, 1_000);
    } catch {
      await sleep(150);
    }
  }
  return { url, chainId, pid: child.pid ?? null, stop, output: () => tail.text() };
}

/**
 * A node already answering at `url`, to reuse instead of starting one; null when nothing answers there.
 * Its `stop()` does nothing: this process does not own it.
 */
export async function findRunningNode(url: string, timeoutMs = 2_000): Promise<LocalNode | null> {
  try {
    const chainId = await probeChainId(url, timeoutMs);
    return { url, chainId, pid: null, stop: async () => undefined, output: () => "" };
  } catch {
    return null;
  }
}

/** A TCP port that was free on `host` a moment ago. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

async function portAnswers(url: string): Promise<boolean> {
  try {
    await probeChainId(url, 500);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Keeps the last lines of the node's output (the pipes must be drained or the node blocks), optionally to a file. */
class OutputTail {
  private lines: string[] = [];
  private partial = "";
  private fd: number | null;

  constructor(logFile?: string) {
    this.fd = logFile ? fs.openSync(logFile, "a") : null;
  }

  push(chunk: Buffer): void {
    if (this.fd !== null) fs.writeSync(this.fd, chunk);
    const text = this.partial + chunk.toString("utf8");
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    this.lines.push(...parts);
    if (this.lines.length > 40) this.lines.splice(0, this.lines.length - 40);
  }

  text(): string {
    return [...this.lines, this.partial].join("\n").trim();
  }

  close(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // closed already
      }
      this.fd = null;
    }
  }
}

/**
 * Hardhat is a development dependency (and an optional peer): an installed statetrail, an auditor's, has none, and
 * only starting a local chain needs it.
 */
function resolveHardhat(cwd: string): string {
  try {
    return require.resolve("hardhat/package.json", { paths: [cwd] });
  } catch (error) {
    throw new StatetrailError(
      "RPC_UNREACHABLE",
      "no local chain here: starting one needs Hardhat, which is not installed",
      {
        hint: "run `statetrail node` or `demo` in a clone of the repository (after npm install), or pass --rpc of a running node",
        cause: error,
      },
    );
  }
}
