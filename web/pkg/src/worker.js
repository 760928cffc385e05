// The package's dedicated Web Worker: owns the device (WebGPU, or the CPU kernels) and the model, so loading and
// generation never block the page. Speaks a small message protocol with index.js:
//   page -> worker: { id, op: "create" | "load" | "run" | "cancel" | "destroyDevice" | "info" | "memory", ...args }
//   worker -> page: { id, type: "progress" | "chunk" | "result" | "error", ... }
// `cancel` is handled as soon as it arrives: a running generation awaits the GPU (or, on the
// CPU, yields to this worker's event loop) between tokens.

import { Core } from "./core.js";

let core = null;

function post(id, type, payload) {
  self.postMessage({ id, type, ...payload });
}

function errorPayload(e) {
  return { error: { name: e?.name ?? "Error", code: e?.code, message: e?.message ?? String(e) } };
}

self.onmessage = async ({ data }) => {
  const { id, op } = data;
  try {
    switch (op) {
      case "create":
        core = await Core.create(data.choice);
        post(id, "result", { value: core.describe() });
        break;
      case "load":
        post(id, "result", { value: await core.load(data.source, data.options, (p) => post(id, "progress", { progress: p })) });
        break;
      case "run":
        post(id, "result", { value: await core.run(data.kind, data.input, data.options, (text) => post(id, "chunk", { text })) });
        break;
      case "cancel":
        core?.cancel();
        break;
      case "destroyDevice":
        core?.destroyDevice();
        post(id, "result", {});
        break;
      case "memory":
        post(id, "result", { value: core?.memory() ?? null });
        break;
      case "info":
        post(id, "result", { value: core?.info() ?? null });
        break;
      default:
        throw new Error(`unknown operation ${op}`);
    }
  } catch (e) {
    post(id, "error", errorPayload(e));
  }
};
