import fs from "node:fs";
import path from "node:path";

// `npx hardhat test test/contracts/**/*.ts` is expanded by the shell, and bash without `globstar` (and sh)
// read `**` as `*`: the pattern then only matches files one directory down, such as this one, and would
// silently skip the suites in test/contracts/. Loading them from here makes the command run the whole
// suite in every shell; when a suite is also passed directly, Node's module cache loads it only once.
const suites = path.resolve(__dirname, "..");
for (const file of fs.readdirSync(suites).sort()) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (file.endsWith(".test.ts")) require(path.join(suites, file));
}
