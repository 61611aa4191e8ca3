import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { ROOT } from "./common";

/**
 * Transpiles the TypeScript sources a child process needs (src/, typechain-types/, scripts/bench/) to
 * CommonJS under `dist/bench/` (gitignored), as ts-node's transpile-only mode does in memory, so that the
 * verifier's peak RSS is measured without the TypeScript compiler loaded in the process (~130 MB).
 * Returns the path of `entry` compiled.
 */
export function compileForChild(entry: string): string {
  const out = path.join(ROOT, "dist", "bench");
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    esModuleInterop: true,
    resolveJsonModule: true,
  };
  const walk = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((item) => {
      const full = path.join(dir, item.name);
      if (item.isDirectory()) return walk(full);
      return item.name.endsWith(".ts") && !item.name.endsWith(".d.ts") ? [full] : [];
    });
  for (const dir of ["src", "typechain-types", path.join("scripts", "bench")]) {
    for (const file of walk(path.join(ROOT, dir))) {
      const relative = path.relative(ROOT, file);
      const target = path.join(out, relative.replace(/\.ts$/, ".js"));
      const { outputText } = ts.transpileModule(fs.readFileSync(file, "utf8"), {
        compilerOptions: options,
        fileName: file,
      });
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, outputText);
    }
  }
  return path.join(out, path.relative(ROOT, entry).replace(/\.ts$/, ".js"));
}
