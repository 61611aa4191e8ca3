import fs from "node:fs";
import { expect } from "chai";
import { Wallet } from "ethers";
import { devPrivateKey } from "../../src/chain/keys";
import { ensContract, setAddr, setText } from "../../src/chain/ens";
import { main } from "../../src/cli/main";
import { createEngine } from "../../src/engine";
import { generateCertificate } from "../../src/identity/certificate";
import { loadModel } from "../../src/model/load";
import { startServer } from "../../src/server";
import { useHardhatNode } from "../helpers/node-process";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import path from "node:path";

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");

interface Verdict {
  code: number;
  report: { verdict: string; steps: Array<{ id: string; status: string; detail: string }> };
}

/**
 * Attacks that need the real parts: the HTTPS server and its certificate, and ENS. Each is verified
 * through the CLI (`statetrail verify <url> --json`), trusting only the registries given as flags.
 */
describe("tamper matrix against the real server and ENS (hardhat node process)", function () {
  this.timeout(180_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let url: string;

  async function verify(): Promise<Verdict> {
    let stdout = "";
    const write = process.stdout.write.bind(process.stdout);
    const errWrite = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += chunk.toString()), true)) as typeof write;
    process.stderr.write = (() => true) as typeof errWrite;
    try {
      const { registries, deployment } = issuer;
      const code = await main([
        "node",
        "statetrail",
        "--rpc",
        chain.url,
        "--json",
        "verify",
        url,
        "--registries",
        `${registries.model},${registries.certificate},${registries.instance}`,
        "--chain-id",
        String(deployment.chainId),
        "--ens-registry",
        deployment.ens.registry,
      ]);
      return { code, report: JSON.parse(stdout) };
    } finally {
      process.stdout.write = write;
      process.stderr.write = errWrite;
    }
  }

  function failing(result: Verdict): string[] {
    return result.report.steps.filter((step) => step.status === "fail").map((step) => step.id);
  }

  before(async function () {
    issuer = await setupIssuer(chain.url);
    const model = await loadModel(path.join(EXAMPLES, "refund-request.asl.json"));
    const engine = createEngine({ engine: "local", handlers: path.join(EXAMPLES, "refund-request.handlers.js") });
    const input = fs.readFileSync(path.join(EXAMPLES, "refund-request.input.json"));
    const protocol = await issuer.tracker(engine).run(model, input);
    url = `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol`;
  });
  after(async function () {
    await issuer?.close();
  });

  it("passes the untampered instance with every check, ENS included (exit 0)", async function () {
    const result = await verify();
    expect(result.code, JSON.stringify(result.report.steps)).to.equal(0);
    expect(result.report.verdict).to.equal("valid");
    expect(result.report.steps.find((s) => s.id === "V2")?.status).to.equal("pass");
  });

  it("detects a man in the middle serving the same bytes with another self-signed certificate (V3, exit 1)", async function () {
    const { port, host } = issuer.server;
    await issuer.server.close();
    const other = generateCertificate({ host: "localhost" });
    const mitm = await startServer({
      home: issuer.home,
      host,
      port,
      certPem: other.certPem,
      keyPem: other.keyPem,
      wellKnown: { registries: issuer.registries },
      log: () => undefined,
    });
    try {
      const result = await verify();
      expect(result.code).to.equal(1);
      expect(failing(result)).to.include("V3");
      expect(result.report.steps.find((s) => s.id === "V3")?.detail).to.match(/not registered/);
    } finally {
      await mitm.close();
      issuer.server = await startServer({
        home: issuer.home,
        host,
        port,
        wellKnown: { registries: issuer.registries },
        log: () => undefined,
      });
    }
  });

  describe("ENS", function () {
    const name = () => issuer.identity.record.ens_name!;

    it("detects the reverse record missing (V2, exit 1)", async function () {
      const reverse = ensContract("ReverseRegistrar", issuer.deployment.ens.reverseRegistrar!, issuer.identity.signer);
      await (await reverse.setName("")).wait();
      try {
        const result = await verify();
        expect(result.code).to.equal(1);
        expect(failing(result)).to.deep.equal(["V2"]);
      } finally {
        await (await reverse.setName(name())).wait();
      }
    });

    it("detects a forward record that names another address (V2, exit 1)", async function () {
      const stranger = Wallet.createRandom().address;
      await setAddr(issuer.identity.signer, issuer.deployment.ens, name(), stranger);
      try {
        const result = await verify();
        expect(result.code).to.equal(1);
        expect(failing(result)).to.deep.equal(["V2"]);
      } finally {
        await setAddr(issuer.identity.signer, issuer.deployment.ens, name(), issuer.identity.record.address);
      }
    });

    it("detects a url record pointing elsewhere (V2, exit 1)", async function () {
      await setText(issuer.identity.signer, issuer.deployment.ens, name(), "url", "https://elsewhere.example");
      try {
        const result = await verify();
        expect(result.code).to.equal(1);
        expect(failing(result)).to.deep.equal(["V2"]);
      } finally {
        await setText(issuer.identity.signer, issuer.deployment.ens, name(), "url", issuer.identity.record.url);
      }
    });

    it("detects a reverse record claimed for the issuer's name by another address (V2, exit 1)", async function () {
      // Someone else's primary name pointing at the issuer's name proves nothing for the issuer.
      const impostor = new Wallet(devPrivateKey(5), issuer.provider);
      const reverse = ensContract("ReverseRegistrar", issuer.deployment.ens.reverseRegistrar!, issuer.identity.signer);
      await (await reverse.setName("")).wait();
      await (await reverse.connect(impostor).getFunction("setName")(name())).wait();
      try {
        const result = await verify();
        expect(result.code).to.equal(1);
        expect(failing(result)).to.include("V2");
      } finally {
        await (await reverse.setName(name())).wait();
      }
    });
  });
});
