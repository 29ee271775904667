// Renders test conversations with @huggingface/jinja: DeepSeek-V3's own chat template (from
// its tokenizer_config.json) and a feature template exercising the Jinja subset. Writes one
// JSON object per line: {"name", "template", "context", "rendered"} ("template" is "deepseek"
// or the template text itself).
// usage: node gen_chat_template_reference.mjs OUT_FILE
import fs from "node:fs";
import { loadJinja, loadTokenizerFiles } from "./js_reference.mjs";

const out = process.argv[2];
if (!out) throw new Error("usage: node gen_chat_template_reference.mjs OUT_FILE");
const { Template } = loadJinja();
const { tokenizerConfig } = loadTokenizerFiles();
const tokenContent = (t) => (t === null || t === undefined ? "" : typeof t === "string" ? t : t.content);
const specials = {
  bos_token: tokenContent(tokenizerConfig.bos_token),
  eos_token: tokenContent(tokenizerConfig.eos_token),
  pad_token: tokenContent(tokenizerConfig.pad_token),
  unk_token: tokenContent(tokenizerConfig.unk_token),
};

const call = (id, name, args) => ({ id, type: "function", function: { name, arguments: JSON.stringify(args) } });
const TOOLS = [{ type: "function", function: { name: "get_weather", description: "Weather for a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
const conversations = {
  single_user: [{ role: "user", content: "Hello!" }],
  system_user: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "What is 2+2?" }],
  multiple_systems: [
    { role: "system", content: "Rule one." }, { role: "user", content: "hi" },
    { role: "system", content: "Rule two.\nWith a newline." }, { role: "assistant", content: "hello" },
    { role: "system", content: "" }, { role: "user", content: "bye" }],
  multi_turn: [
    { role: "user", content: "Tell me a joke." }, { role: "assistant", content: "Why did the chicken cross the road?" },
    { role: "user", content: "Why?" }, { role: "assistant", content: "To get to the other side." },
    { role: "user", content: "  spaces  and\ttabs\n\n" }],
  non_ascii: [
    { role: "system", content: "你是一个乐于助人的助手。" }, { role: "user", content: "こんにちは 👋🏽 مرحبا Ελληνικά ñ" },
    { role: "assistant", content: "你好！😀 \u200d e\u0301" }, { role: "user", content: "中文测试：１２３" }],
  special_text_in_content: [{ role: "user", content: "What does <｜User｜> mean? And <｜end▁of▁sentence｜>?" }],
  empty_content: [{ role: "user", content: "" }, { role: "assistant", content: "" }],
  one_tool_call: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: null, tool_calls: [call("c1", "get_weather", { city: "Paris" })] },
    { role: "tool", tool_call_id: "c1", content: "{\"temp\": 21}" },
    { role: "assistant", content: "It is 21°C in Paris." }],
  two_tool_calls_two_outputs: [
    { role: "system", content: "Use tools." },
    { role: "user", content: "Weather in Paris and 東京?" },
    { role: "assistant", content: null, tool_calls: [call("c1", "get_weather", { city: "Paris" }), call("c2", "get_weather", { city: "東京" })] },
    { role: "tool", tool_call_id: "c1", content: "21" },
    { role: "tool", tool_call_id: "c2", content: "25" },
    { role: "assistant", content: "Paris 21, Tokyo 25." },
    { role: "user", content: "thanks" }],
  ends_with_tool_output: [
    { role: "user", content: "Weather?" },
    { role: "assistant", content: null, tool_calls: [call("c1", "get_weather", { city: "Oslo" })] },
    { role: "tool", tool_call_id: "c1", content: "-3" }],
  tool_calls_in_two_turns: [
    { role: "user", content: "a" },
    { role: "assistant", content: null, tool_calls: [call("c1", "f", { x: 1 })] },
    { role: "tool", content: "1" },
    { role: "assistant", content: "one" },
    { role: "user", content: "b" },
    { role: "assistant", content: null, tool_calls: [call("c2", "g", { y: [1, 2] })] },
    { role: "tool", content: "2" }],
};

// Exercises the interpreter beyond DeepSeek-V3's template (R1/V3.1-style constructs).
const FEATURE_TEMPLATE = `{%- macro render(m, prefix='> ') -%}
{{ prefix }}{{ m['role'] | upper }}: {{ (m.content or '') | trim }}
{%- endmacro -%}
{% set ns = namespace(count=0, names=[]) %}
{%- for message in messages if message.role != 'system' -%}
  {%- set ns.count = ns.count + 1 -%}
  {{ loop.index }}/{{ loop.length }}{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %}
  {{ render(message) }}
  {%- if message.content is string and '</think>' in message.content %}
[answer={{ message.content.split('</think>')[-1] | trim }}]
  {%- endif %}
  {%- if message.tool_calls is defined and message.tool_calls %}
    {%- for tc in message.tool_calls %} call {{ tc.function.name }}({{ tc.function.arguments }}){% endfor %}
  {%- endif %}
{% endfor -%}
count={{ ns.count }} {{ messages | length }} {{ (messages[0].content or 'none')[:5] }}
{{ tools | tojson if tools is defined else 'no tools' }}
{{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 3 }} {{ 1.5 + 1 }} {{ 'a' ~ 1 ~ true }} {{ none }}|{{ [1, 'x', none] }}
{{ {'k': 'v', 'n': 1} | tojson }} {{ 'x,y,,z'.split(',') | join('+') }} {{ 'AbC'.lower() }} {{ '  s  '.strip() }}
{%- if add_generation_prompt %}
<gen>{% endif %}`;

const contexts = [];
for (const [name, messages] of Object.entries(conversations)) {
  for (const agp of [false, true]) {
    contexts.push({ name: `${name}/agp=${agp}`, template: "deepseek", context: { messages, add_generation_prompt: agp, ...specials } });
  }
  contexts.push({ name: `${name}/features`, template: FEATURE_TEMPLATE,
    context: { messages, add_generation_prompt: true, ...(name.includes("tool") ? { tools: TOOLS } : {}), ...specials } });
}
contexts.push({ name: "with_tools_arg/agp=true", template: "deepseek",
  context: { messages: conversations.one_tool_call, add_generation_prompt: true, tools: TOOLS, ...specials } });

const deepseek = new Template(tokenizerConfig.chat_template);
const lines = contexts.map(({ name, template, context }) => {
  const t = template === "deepseek" ? deepseek : new Template(template);
  return JSON.stringify({ name, template, context, rendered: t.render(context) });
});
fs.writeFileSync(out, lines.join("\n") + "\n");
console.log(`wrote ${lines.length} chat template renderings to ${out}`);
