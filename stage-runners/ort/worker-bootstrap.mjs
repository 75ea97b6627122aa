// Entry point of every ORT worker thread. Node 20 loads a worker's main module before the
// `--import tsx` in its execArgv has taken effect, so a .ts entry fails with
// ERR_UNKNOWN_FILE_EXTENSION; this plain-JS file registers tsx's ESM hooks itself (harmless when
// the parent's --import tsx registered them too) and then loads the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./worker.ts");
