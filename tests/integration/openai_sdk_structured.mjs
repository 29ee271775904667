// Structured outputs and tool calls as an OpenAI SDK user meets them (the official `openai`
// package), on a model with random weights: whatever the weights say, constrained decoding
// must give JSON that parses and validates, and forced tool calls that the SDK reads.
//   node openai_sdk_structured.mjs BASE_URL MODEL
// Exits 1 naming the first check that failed.
import { requireFromCache } from "../tokenizer/js_reference.mjs";
import { check, refusal } from "./sdk_checks.mjs";

const { default: OpenAI, BadRequestError } = requireFromCache()("openai");
const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 120000 });



// The schema, checked here by hand (not by our own matcher).
const weather = {
  type: "object",
  properties: {
    city: { type: "string", maxLength: 12 },
    days: { type: "integer", minimum: 1, maximum: 14 },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    hourly: { type: "boolean" },
  },
  required: ["city", "days", "unit", "hourly"],
  additionalProperties: false,
};
function validWeather(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) &&
    typeof v.city === "string" && [...v.city].length <= 12 &&
    Number.isInteger(v.days) && v.days >= 1 && v.days <= 14 &&
    (v.unit === "celsius" || v.unit === "fahrenheit") && typeof v.hourly === "boolean" &&
    Object.keys(v).every((k) => k in weather.properties);
}
const messages = [{ role: "user", content: "What is the weather in Paris this week?" }];
const response_format = { type: "json_schema", json_schema: { name: "weather", strict: true, schema: weather } };

// 1. json_schema through the SDK's parse helper, n = 2, sampled.
const parsed = await client.chat.completions.parse({
  model, messages, response_format, max_tokens: 200, n: 2, temperature: 1, seed: 7,
});
check(parsed.choices.length === 2, "two choices");
for (const c of parsed.choices) {
  check(validWeather(c.message.parsed), "json_schema: the SDK's parsed object validates",
    c.message.content);
  check(c.finish_reason === "stop", "json_schema: the model ended its turn", c.finish_reason);
}

// 2. The same streamed (greedy), and the parts make the JSON.
const stream = await client.chat.completions.create({
  model, messages, response_format, max_tokens: 200, temperature: 0, stream: true,
});
let streamed = "";
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
check(validWeather(JSON.parse(streamed)), "json_schema streamed: the joined deltas validate", streamed);

// 3. json_object, cut short by max_tokens: it still parses (room to finish).
for (const max_tokens of [8, 24]) {
  const r = await client.chat.completions.create({
    model, messages, response_format: { type: "json_object" }, max_tokens, temperature: 0,
  });
  const text = r.choices[0].message.content;
  let value;
  try { value = JSON.parse(text); } catch { value = undefined; }
  check(value !== null && typeof value === "object" && !Array.isArray(value),
    `json_object within max_tokens ${max_tokens} parses`, text);
  check(r.usage.completion_tokens <= max_tokens, "within max_tokens");
}

// 4. A forced tool call, the result sent back, and the answer.
const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather for a city",
      parameters: weather } },
  { type: "function", function: { name: "get_time", parameters: {
      type: "object", properties: { zone: { type: "string", maxLength: 8 } }, required: ["zone"] } } },
];
const called = await client.chat.completions.create({
  model, messages, tools, tool_choice: "required", max_tokens: 200, temperature: 0,
});
const turn = called.choices[0];
check(turn.finish_reason === "tool_calls", "tool_choice required: finish_reason tool_calls",
  JSON.stringify(turn));
const calls = turn.message.tool_calls ?? [];
check(calls.length >= 1, "tool_choice required: at least one call", JSON.stringify(turn.message));
for (const call of calls) {
  check(call.type === "function" && /^call_/.test(call.id), "a call has an id and type");
  const args = JSON.parse(call.function.arguments);
  if (call.function.name === "get_weather") {
    check(validWeather(args), "get_weather's arguments validate", call.function.arguments);
  } else {
    check(call.function.name === "get_time" && typeof args.zone === "string",
      "get_time's arguments validate", call.function.arguments);
  }
}
const answer = await client.chat.completions.create({
  model, tools, max_tokens: 16, temperature: 0,
  messages: [...messages, turn.message,
    ...calls.map((c) => ({ role: "tool", tool_call_id: c.id, content: '{"temperature": 21}' }))],
});
check(typeof answer.choices[0].message.content === "string",
  "the tool results go back and the model answers");

// 5. A named function, one call only, streamed: the first delta names it, then arguments.
const named = await client.chat.completions.create({
  model, messages, tools, max_tokens: 200, temperature: 0, stream: true, parallel_tool_calls: false,
  tool_choice: { type: "function", function: { name: "get_time" } },
});
const deltas = [];
let finish = null;
for await (const chunk of named) {
  const choice = chunk.choices[0];
  if (!choice) continue;
  deltas.push(...(choice.delta.tool_calls ?? []));
  finish = choice.finish_reason ?? finish;
}
check(deltas.length >= 1 && deltas[0].function.name === "get_time" && deltas[0].id,
  "streamed: the first tool-call delta carries the id and the name", JSON.stringify(deltas));
check(deltas.every((d) => d.index === 0), "parallel_tool_calls false: one call");
const joined = deltas.map((d) => d.function.arguments ?? "").join("");
check(typeof JSON.parse(joined).zone === "string", "streamed: the argument fragments join to JSON", joined);
check(finish === "tool_calls", "streamed: finish_reason tool_calls");

// 6. The router splits reasoning (--reasoning_parser deepseek_r1): random weights never
// close the thinking, so a free answer is all reasoning_content; streamed, the same.
const free = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
const thought = free.choices[0].message.reasoning_content;
check(typeof thought === "string" && thought.length > 0 && free.choices[0].message.content === "",
  "reasoning: the unclosed thinking is reasoning_content", JSON.stringify(free.choices[0].message));
const thinking = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true,
});
let streamedThought = "";
let streamedContent = "";
for await (const chunk of thinking) {
  streamedThought += chunk.choices[0]?.delta?.reasoning_content ?? "";
  streamedContent += chunk.choices[0]?.delta?.content ?? "";
}
check(streamedThought === thought && streamedContent === "",
  "reasoning streamed: delta.reasoning_content joins to the same", streamedThought);

// 7. The rest of the surface. logit_bias: +100 on one token all but forces it.
const biased = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 4, temperature: 0,
  logit_bias: { "1000": 100 }, return_token_ids: true,
});
check(biased.choices[0].token_ids.every((t) => t === 1000), "logit_bias forces its token",
  JSON.stringify(biased.choices[0]));
// seed: the same seed and parameters give the same text; sampling is the default (no
// temperature given: the checkpoint's generation_config.json, 0.7 here), so n = 3 differ.
const seeded = () => client.completions.create({ model, prompt: "Once", max_tokens: 6, seed: 5 });
const [s1, s2] = [await seeded(), await seeded()];
check(s1.choices[0].text === s2.choices[0].text, "seed: the same seed gives the same text");
const three = await client.completions.create({ model, prompt: "Once", max_tokens: 6, n: 3 });
check(new Set(three.choices.map((c) => c.text)).size > 1,
  "no temperature: sampled (the checkpoint's default), so n = 3 differ", JSON.stringify(three.choices));
// echo: the prompt comes back first; max_completion_tokens bounds a chat turn.
const echoed = await client.completions.create({
  model, prompt: "Once upon", max_tokens: 2, temperature: 0, echo: true,
});
check(echoed.choices[0].text.startsWith("Once upon"), "echo returns the prompt first");
const bounded = await client.chat.completions.create({ model, messages, max_completion_tokens: 3 });
check(bounded.usage.completion_tokens <= 3, "max_completion_tokens bounds the turn");

// logprobs with alternatives, one entry per generated token; the model is listed.
const withLogprobs = await client.chat.completions.create({
  model, messages, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2,
});
const entries = withLogprobs.choices[0].logprobs?.content ?? [];
check(entries.length === withLogprobs.usage.completion_tokens &&
  entries.every((e) => e.logprob <= 0 && e.top_logprobs.length === 2),
  "logprobs: an entry per token with two alternatives", JSON.stringify(entries));
const listed = [];
for await (const m of client.models.list()) listed.push(m.id);
check(listed.includes(model), "models.list() names the model", JSON.stringify(listed));

// 8. What is not supported is a 400 naming it, through the SDK's typed error.
const pattern = await refusal(client.chat.completions.create({
  model, messages, max_tokens: 4, response_format: { type: "json_schema", json_schema: {
    name: "p", schema: { type: "object", properties: { a: { type: "string", pattern: "^x" } } } } },
}));
check(pattern instanceof BadRequestError && /pattern/.test(pattern.message),
  "an unsupported schema keyword is a BadRequestError naming it", String(pattern));
const noTools = await refusal(client.chat.completions.create({
  model, messages, max_tokens: 4, tool_choice: "required",
}));
check(noTools instanceof BadRequestError, "tool_choice required without tools is a BadRequestError");
const legacy = await refusal(client.chat.completions.create({
  model, messages, max_tokens: 4, functions: [{ name: "f", parameters: {} }],
}));
check(legacy instanceof BadRequestError && /functions/.test(legacy.message),
  "legacy functions are a BadRequestError pointing to tools", String(legacy));
const unknown = await refusal(client.chat.completions.create({
  model, messages, tools, max_tokens: 4, tool_choice: { type: "function", function: { name: "nope" } },
}));
check(unknown instanceof BadRequestError && /nope/.test(unknown.message),
  "tool_choice naming no tool is a BadRequestError", String(unknown));
console.log("all structured-output checks passed");
