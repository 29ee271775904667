// What the OpenAI SDK scripts of the integration tests share: a check that names what held
// (or exits 1 naming what did not), and the error a call ended with.

export function check(cond, what, detail = "") {
  if (!cond) {
    console.error(`FAIL: ${what} ${detail}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

// The error `promise` rejects with, or null when it resolves.
export async function refusal(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return e;
  }
}
