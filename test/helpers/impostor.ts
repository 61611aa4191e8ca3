import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { Wallet } from "ethers";
import { devPrivateKey } from "../../src/chain/keys";
import { freePort } from "../../src/chain/node";
import { type Engine } from "../../src/engine/types";
import { initIdentity, type InitIdentityResult } from "../../src/identity/identity";
import { pinnedFetch } from "../../src/net/pinned-fetch";
import { startServer, type RunningServer } from "../../src/server";
import { Home } from "../../src/store/home";
import { Tracker } from "../../src/tracker/tracker";
import { type TestIssuer } from "./issuer";

/**
 * A second, genuine issuer on the same chain, registries and ENS as `victim`, whose identity claims the
 * victim's origin: its own key, its own registered certificate, its own ENS name with `url` = the victim's url.
 */
export interface Impostor {
  home: Home;
  identity: InitIdentityResult;
  tracker(engine: Engine): Tracker;
}

export async function setupImpostor(victim: TestIssuer, label: string): Promise<Impostor> {
  const home = new Home(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-impostor-"))).ensure();
  const identity = await initIdentity({
    home,
    provider: victim.provider,
    network: "localhost",
    chainId: victim.deployment.chainId,
    registries: victim.registries,
    ens: victim.deployment.ens,
    host: "localhost",
    port: victim.server.port,
    ensLabel: label,
    funder: new Wallet(devPrivateKey(0), victim.provider),
  });
  return {
    home,
    identity,
    tracker: (engine) =>
      new Tracker({
        home,
        signer: identity.signer,
        identity: identity.record,
        registries: victim.registries,
        chainId: victim.deployment.chainId,
        engine,
      }),
  };
}

/**
 * Whoever answers at the victim's origin: presents the impostor's registered certificate and serves the
 * impostor's server's files, with some paths answered by others' (`rewrite`: victim path → impostor path).
 */
export interface Substitute {
  close(): Promise<void>;
}

export async function substituteAt(
  at: { host: string; port: number },
  impostor: Impostor,
  rewrite: Record<string, string>,
): Promise<Substitute> {
  const backendPort = await freePort();
  const backend: RunningServer = await startServer({ home: impostor.home, port: backendPort, log: () => undefined });
  const server = https.createServer(
    {
      cert: fs.readFileSync(impostor.home.path("tls", "cert.pem")),
      key: fs.readFileSync(impostor.home.path("tls", "key.pem")),
    },
    (request, response) => {
      const wanted = request.url ?? "/";
      pinnedFetch(`https://localhost:${backendPort}${rewrite[wanted] ?? wanted}`, { maxBytes: 64 << 20 }).then(
        (answer) => {
          response.writeHead(answer.status, { "content-type": String(answer.headers["content-type"] ?? "") });
          response.end(answer.body);
        },
        () => {
          response.writeHead(404);
          response.end();
        },
      );
    },
  );
  await new Promise<void>((resolve) => server.listen(at.port, at.host, resolve));
  return {
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await backend.close();
    },
  };
}
