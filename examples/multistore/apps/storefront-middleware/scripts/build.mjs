// Builds the middleware: copies src/ to lib/ (a stand-in for a TypeScript build).
import { cpSync, rmSync } from "node:fs";

rmSync("lib", { recursive: true, force: true });
cpSync("src", "lib", { recursive: true });
console.log("middleware built into lib/");
