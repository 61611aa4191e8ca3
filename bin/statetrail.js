#!/usr/bin/env node
// The statetrail CLI. Runs the TypeScript sources directly (transpile only: types are checked in CI).
const path = require("node:path");
require("ts-node").register({
  transpileOnly: true,
  project: path.join(__dirname, "..", "tsconfig.json"),
  compilerOptions: { module: "commonjs" },
});
require("../src/cli/main")
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      console.error(error);
      process.exitCode = 70;
    },
  );
