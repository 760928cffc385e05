// The end-to-end tests' runner: named checks that run one after another, each printed as
// `ok` or `FAIL` with its time; a failure is recorded and the next check still runs.
// CRIA_E2E_ONLY=TEXT runs only the checks whose name contains TEXT (while developing).

export function checks() {
  const results = [];
  const only = process.env.CRIA_E2E_ONLY;
  async function check(name, body) {
    if (only && !name.includes(only)) return;
    const start = Date.now();
    try {
      await body();
      results.push({ name, ok: true });
      console.log(`ok   ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
    } catch (e) {
      results.push({ name, ok: false });
      console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split("\n").join("\n     ")}`);
    }
  }
  return { check, results };
}
