#!/usr/bin/env node
// The `lavie` command: registers tsx's ESM loader so the TypeScript CLI runs without a build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../client/cli/main.ts");
process.exitCode = await main(process.argv);
