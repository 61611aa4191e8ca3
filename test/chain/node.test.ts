import { expect } from "chai";
import { isStatetrailError } from "../../src/errors";
import { findRunningNode, freePort, startNode, type LocalNode } from "../../src/chain/node";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("chain: hardhat node process", function () {
  let node: LocalNode | undefined;
  after(async function () {
    await node?.stop();
  });

  it("starts a real hardhat node, is found running, refuses a second one on its port, and stops for real", async function () {
    const port = await freePort();
    expect(await findRunningNode(`http://127.0.0.1:${port}`, 500)).to.equal(null);

    node = await startNode({ port });
    expect(node.url).to.equal(`http://127.0.0.1:${port}`);
    expect(node.chainId).to.equal(31337);
    expect(node.pid).to.be.a("number");
    expect(alive(node.pid!)).to.equal(true);

    const found = await findRunningNode(node.url);
    expect(found?.chainId).to.equal(31337);
    expect(found?.pid).to.equal(null);
    await found?.stop(); // not ours: a no-op
    expect(await findRunningNode(node.url)).not.to.equal(null);

    try {
      await startNode({ port });
      expect.fail("a second node on the same port must be refused");
    } catch (error) {
      expect(isStatetrailError(error, "INVALID_ARGUMENT"), String(error)).to.equal(true);
    }

    const pid = node.pid!;
    await node.stop();
    expect(alive(pid)).to.equal(false);
    expect(await findRunningNode(node.url, 500)).to.equal(null);
    await node.stop(); // idempotent
    node = undefined;
  });
});
