import fs from "node:fs";
import path from "node:path";

/**
 * The folder of statetrail's package.json: the repository in a clone, the installed package otherwise. The same
 * whether this file runs as TypeScript from src/ or compiled from dist/src/ (one level deeper), so paths to
 * deployments/ and examples/ don't depend on which.
 */
export const PACKAGE_ROOT = findPackageRoot(__dirname);

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(start, "..");
  }
}
