// A static file server for the demo and the package (no dependencies): serves web/ so that
// /demo/ is the demo page and /pkg/ the npm package it imports. WebGPU needs a secure context:
// localhost is one.
//
//   node web/serve.mjs [--port 8080] [--host 127.0.0.1]
//
// The end-to-end test imports `serve` and adds routes of its own (faults, request counts).

import { createReadStream, promises as fs } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".ts": "text/plain; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};

/**
 * Starts serving `root`. `routes(req, res)` may answer a request first (return true).
 * `onRequest(path)` sees every request. Resolves to { server, url, close() }.
 */
export function serve({ root = fileURLToPath(new URL(".", import.meta.url)), port = 0, host = "127.0.0.1", routes = () => false, onRequest = () => {} } = {}) {
  const base = normalize(root + sep);
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    onRequest(path);
    try {
      if (await routes(req, res, path)) return;
      if (path === "/") {
        res.writeHead(302, { location: "/demo/" });
        return res.end();
      }
      let file = normalize(join(base, path));
      if (!file.startsWith(base)) {
        res.writeHead(403);
        return res.end("forbidden");
      }
      let stat = await fs.stat(file).catch(() => null);
      if (stat?.isDirectory()) {
        if (!path.endsWith("/")) {
          res.writeHead(301, { location: `${path}/` });
          return res.end();
        }
        file = join(file, "index.html");
        stat = await fs.stat(file).catch(() => null);
      }
      if (!stat?.isFile()) {
        res.writeHead(404, { "content-type": "text/plain" });
        return res.end(`not found: ${path}`);
      }
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "content-length": stat.size,
        "cache-control": "no-cache",
      });
      if (req.method === "HEAD") return res.end();
      createReadStream(file).pipe(res);
    } catch (e) {
      res.writeHead(500);
      res.end(String(e));
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      resolve({ server, url: `http://${host === "0.0.0.0" ? "localhost" : host}:${actual}`, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const { url } = await serve({ port: Number(arg("--port", 8080)), host: arg("--host", "127.0.0.1") });
  try {
    await fs.access(new URL("./pkg/dist/cria_web_bg.wasm", import.meta.url));
  } catch {
    console.warn("warning: web/pkg/dist is not built yet: run bash scripts/build-web.sh");
  }
  console.log(`Cria demo: ${url}/demo/  (the package is at ${url}/pkg/; Ctrl-C stops)`);
}
