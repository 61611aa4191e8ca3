import http from "node:http";
import { type AddressInfo } from "node:net";
import { expect } from "chai";
import { JsonRpcProvider, ethers, type Log } from "ethers";
import { sha256Hex, toBytes32 } from "../../src/chain/hash";
import { decodeInstanceLogs, directGetLogs, instanceLogQuery, isRangeError, logChunks } from "../../src/verify/logs";
import { IInstanceRegistry__factory } from "../../typechain-types";

/*
 * The verifier's stream reads eth_getLogs straight over HTTP (logs.ts directGetLogs): the same logs, decoded to the
 * same events, as ethers' provider.getLogs reading the same endpoint; errors keep what the chunked reader reads
 * (a range refused is split).
 */

const registryInterface = IInstanceRegistry__factory.createInterface();
const REGISTRY = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
const ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const INSTANCE = sha256Hex("instance");
const H = (label: string): string => sha256Hex(label);

function rpcLog(block: number, index: number, name: string, values: unknown[]): Record<string, unknown> {
  const { topics, data } = registryInterface.encodeEventLog(name, values);
  return {
    address: REGISTRY.toLowerCase(),
    topics,
    data,
    blockNumber: "0x" + block.toString(16),
    blockHash: ethers.keccak256(ethers.toUtf8Bytes(`block ${block}`)),
    transactionHash: ethers.keccak256(ethers.toUtf8Bytes(`tx ${block}`)),
    transactionIndex: "0x0",
    logIndex: "0x" + index.toString(16),
    removed: false,
  };
}

describe("logs: eth_getLogs straight over HTTP", function () {
  let server: http.Server;
  let url: string;
  let refuseRange = 0;
  const logs = [
    rpcLog(1, 0, "InstanceCreated", [ISSUER, toBytes32(INSTANCE), toBytes32(H("model"))]),
    rpcLog(3, 1, "StateRegistered", [ISSUER, toBytes32(INSTANCE), toBytes32(H("a")), toBytes32(INSTANCE)]),
    rpcLog(12, 2, "StatesRegistered", [
      ISSUER,
      toBytes32(INSTANCE),
      toBytes32(H("a")),
      [toBytes32(H("b")), toBytes32(H("c"))],
    ]),
    rpcLog(25, 3, "InstanceTerminated", [ISSUER, toBytes32(INSTANCE), toBytes32(H("c")), 2]),
  ];

  before(async function () {
    server = http.createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
      request.on("end", () => {
        const call = JSON.parse(body) as {
          id: number;
          method: string;
          params: { fromBlock: string; toBlock: string }[];
        };
        const reply = (payload: object): void => {
          response.setHeader("content-type", "application/json");
          response.end(JSON.stringify({ jsonrpc: "2.0", id: call.id, ...payload }));
        };
        if (call.method === "eth_chainId") return reply({ result: "0x7a69" });
        const from = parseInt(call.params[0].fromBlock, 16);
        const to = parseInt(call.params[0].toBlock, 16);
        if (refuseRange > 0 && to - from + 1 > refuseRange) {
          return reply({ error: { code: -32005, message: `block range too large, at most ${refuseRange}` } });
        }
        reply({
          result: logs.filter((log) => {
            const block = parseInt(log.blockNumber as string, 16);
            return block >= from && block <= to;
          }),
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(function () {
    server.close();
  });

  it("reads the same logs as provider.getLogs, decoded to the same events", async function () {
    const provider = new JsonRpcProvider(url, 31337, { staticNetwork: true });
    const direct = directGetLogs(provider);
    expect(direct).to.not.equal(null);
    const filter = { ...instanceLogQuery(REGISTRY, ISSUER, INSTANCE), fromBlock: 0, toBlock: 30 };
    const mine = await direct!.getLogs(filter);
    const theirs = await provider.getLogs(filter);
    expect(mine.length).to.equal(4);
    const fields = (log: Log) => ({
      topics: log.topics,
      data: log.data,
      blockNumber: log.blockNumber,
      index: log.index,
      transactionHash: log.transactionHash,
      address: log.address.toLowerCase(),
    });
    expect(mine.map(fields)).to.deep.equal(theirs.map(fields));
    expect(decodeInstanceLogs(mine, REGISTRY)).to.deep.equal(decodeInstanceLogs(theirs, REGISTRY));
    provider.destroy();
  });

  it("a range the node refuses is an error the chunked reader splits on", async function () {
    refuseRange = 10;
    try {
      const provider = new JsonRpcProvider(url, 31337, { staticNetwork: true });
      const direct = directGetLogs(provider)!;
      const error = await direct
        .getLogs({ ...instanceLogQuery(REGISTRY, ISSUER, INSTANCE), fromBlock: 0, toBlock: 30 })
        .then(
          () => null,
          (caught: unknown) => caught,
        );
      expect(isRangeError(error)).to.equal(true);
      const read: Log[] = [];
      for await (const chunk of logChunks(direct, instanceLogQuery(REGISTRY, ISSUER, INSTANCE), 0, 30, {
        chunkSize: 100,
      })) {
        read.push(...chunk);
      }
      expect(read.map((log) => log.blockNumber)).to.deep.equal([1, 3, 12, 25]);
      provider.destroy();
    } finally {
      refuseRange = 0;
    }
  });

  it("is not used for a provider that is not a JsonRpcProvider over HTTP", function () {
    expect(directGetLogs({ getLogs: () => Promise.resolve([]) })).to.equal(null);
    expect(
      directGetLogs(new JsonRpcProvider("http://user:secret@127.0.0.1:1", 31337, { staticNetwork: true })),
    ).to.equal(null);
  });
});
