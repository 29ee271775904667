// The router's HTTPS as an OpenAI SDK user meets it (the official `openai` package):
//   NODE_EXTRA_CA_CERTS=CA.pem node openai_sdk_tls.mjs https://HOST:PORT/v1 MODEL trusted
//   node openai_sdk_tls.mjs https://HOST:PORT/v1 MODEL untrusted
// trusted: models, a completion and a streamed completion over TLS, verified against the
// cluster's CA. untrusted (no CA given): the SDK refuses the server's certificate with an
// APIConnectionError. Exits 1 naming the first check that failed.
import { requireFromCache } from "../tokenizer/js_reference.mjs";
import { check } from "./sdk_checks.mjs";

const { default: OpenAI, APIConnectionError } = requireFromCache()("openai");
const [baseURL, model, mode] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 30000 });


if (mode === "untrusted") {
  let error = null;
  try {
    await client.models.list();
  } catch (e) {
    error = e;
  }
  check(error instanceof APIConnectionError, "a server the client does not trust is an APIConnectionError");
  const cause = String(error?.cause?.code ?? error?.cause?.cause?.code ?? error?.cause ?? "");
  console.log(`  cause: ${cause}`);
  process.exit(0);
}

const models = await client.models.list();
check(models.data.some((m) => m.id === model), "models.list() over HTTPS names the model");
const completion = await client.completions.create({ model, prompt: [0, 17, 5], max_tokens: 4 });
check(completion.usage.completion_tokens === 4, "a completion over HTTPS");
const stream = await client.completions.create({ model, prompt: [0, 17, 5], max_tokens: 4, stream: true });
let finish = null;
for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
check(finish === "length", "a streamed completion over HTTPS runs to its end");
