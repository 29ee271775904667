// The router's API keys as an OpenAI SDK user meets them (the official `openai` package):
//   node openai_sdk_api_keys.mjs BASE_URL MODEL KEYS_FILE ALICE_KEY BOB_KEY
// ALICE_KEY has no limits, BOB_KEY one request a second (rps=1). Checks: a wrong key is an
// AuthenticationError (401, invalid_api_key); the right one lists models, completes and
// streams; over its limit a key gets a RateLimitError (429 with Retry-After), which the SDK's
// own retry then rides out; a key added to KEYS_FILE works and a key removed is refused
// within seconds, without a restart. Exits 1 naming the first check that failed.
import fs from "node:fs";
import { requireFromCache } from "../tokenizer/js_reference.mjs";
import { check, refusal } from "./sdk_checks.mjs";

const { default: OpenAI, AuthenticationError, RateLimitError } = requireFromCache()("openai");
const [baseURL, model, keysFile, alice, bob] = process.argv.slice(2);
const client = (apiKey, maxRetries = 0) => new OpenAI({ baseURL, apiKey, maxRetries, timeout: 30000 });
const prompt = [0, 17, 5];



function writeKeys(text) {  // replaced whole, as a Kubernetes Secret update does
  fs.writeFileSync(keysFile + ".new", text);
  fs.renameSync(keysFile + ".new", keysFile);
}

async function waitFor(what, probe) {
  const until = Date.now() + 10000;
  while (Date.now() < until) {
    if (await probe()) return check(true, what);
    await new Promise((r) => setTimeout(r, 100));
  }
  check(false, what);
}

const wrong = await refusal(client("sk-wrong-0123456789abcdef").completions.create({ model, prompt, max_tokens: 4 }));
check(wrong instanceof AuthenticationError && wrong.status === 401, "a wrong key is an AuthenticationError (401)");
check(wrong.code === "invalid_api_key", "its code is invalid_api_key");

const models = await client(alice).models.list();
check(models.data.some((m) => m.id === model), `models.list() names ${model}`);
const done = await client(alice).completions.create({ model, prompt, max_tokens: 8 });
check(done.usage.completion_tokens === 8, "a completion with the key: 8 tokens");
let chunks = 0;
for await (const chunk of await client(alice).completions.create({ model, prompt, max_tokens: 8, stream: true })) {
  if (chunk.choices.length > 0) chunks++;
}
check(chunks >= 1, "a streamed completion with the key");

// bob: rps=1. Two at once: the second is over the limit.
await client(bob).completions.create({ model, prompt, max_tokens: 1 });
const limited = await refusal(client(bob).completions.create({ model, prompt, max_tokens: 1 }));
check(limited instanceof RateLimitError && limited.status === 429, "over rps=1: a RateLimitError (429)");
check(Number(limited.headers.get("retry-after")) >= 1, "with Retry-After");
check(limited.code === "rate_limit_exceeded", "its code is rate_limit_exceeded");
const retried = await client(bob, 3).completions.create({ model, prompt, max_tokens: 1 });
check(retried.usage.completion_tokens === 1, "the SDK's retry honours retry-after and gets through");

// Key rotation through the file: carol added, then alice revoked.
const carol = "sk-carol-0123456789abcdef";
const original = fs.readFileSync(keysFile, "utf8");
writeKeys(`${original}carol ${carol}\n`);
await waitFor("a key added to the file works without a restart", async () =>
  (await refusal(client(carol).completions.create({ model, prompt, max_tokens: 1 }))) === null);
writeKeys(original.split("\n").filter((l) => !l.startsWith("alice ")).join("\n") + `carol ${carol}\n`);
await waitFor("a key removed from the file is refused", async () =>
  (await refusal(client(alice).models.list())) instanceof AuthenticationError);
