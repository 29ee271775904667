#include "tokenizer/split_regex.h"

#include "absl/strings/str_cat.h"

namespace dsv3::tokenizer {
namespace {

// Unicode White_Space (PropList.txt), which is Oniguruma's \s for Unicode strings.
constexpr char kWhiteSpaceSet[] =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Per-thread PCRE2 match state: match data big enough for one match, and a JIT stack.
struct MatchState {
  MatchState() {
    match_data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
    if (jit_stack != nullptr) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchState() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(context);
    if (jit_stack != nullptr) pcre2_jit_stack_free(jit_stack);
  }
  pcre2_match_data* match_data;
  pcre2_match_context* context;
  pcre2_jit_stack* jit_stack;
};

MatchState& ThreadMatchState() {
  thread_local MatchState state;
  return state;
}

absl::Status Unsupported(absl::string_view what, absl::string_view pattern) {
  return absl::UnimplementedError(absl::StrCat("pre-tokenizer regex: ", what,
                                               " is not supported (pattern: ", pattern, ")"));
}

}  // namespace

absl::StatusOr<std::string> TranslateOnigurumaPattern(absl::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() * 2);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '[') {
      if (in_class) {
        if (i + 1 < pattern.size() && pattern[i + 1] == ':') {
          return Unsupported("a POSIX bracket class", pattern);
        }
        return Unsupported("a nested character class", pattern);
      }
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal in both dialects.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.append("\\]"), ++i;
      continue;
    }
    if (c == ']' && in_class) {
      in_class = false;
      out.push_back(c);
      continue;
    }
    if (in_class && c == '&' && i + 1 < pattern.size() && pattern[i + 1] == '&') {
      return Unsupported("character class intersection (&&)", pattern);
    }
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (i + 1 >= pattern.size()) return Unsupported("a trailing backslash", pattern);
    const char e = pattern[++i];
    switch (e) {
      case 's':
        out.append(in_class ? kWhiteSpaceSet : absl::StrCat("[", kWhiteSpaceSet, "]"));
        break;
      case 'S':
        if (in_class) return Unsupported("\\S inside a character class", pattern);
        out.append(absl::StrCat("[^", kWhiteSpaceSet, "]"));
        break;
      case 'd':
        out.append("\\p{Nd}");
        break;
      case 'D':
        out.append("\\P{Nd}");
        break;
      case 'w': case 'W': case 'b': case 'B': case 'h': case 'H': case 'G': case 'K':
      case 'R': case 'X': case 'y': case 'Y': case 'O': case 'N':
        return Unsupported(absl::StrCat("\\", absl::string_view(&e, 1)), pattern);
      case 'p': case 'P': case 'x': {
        out.push_back('\\');
        out.push_back(e);
        if (i + 1 < pattern.size() && pattern[i + 1] == '{') {
          const size_t close = pattern.find('}', i + 1);
          if (close == absl::string_view::npos) return Unsupported("an unterminated \\p{", pattern);
          const absl::string_view body = pattern.substr(i + 1, close - i);
          out.append(body.data(), body.size());
          i = close;
        }
        break;
      }
      default:
        out.push_back('\\');
        out.push_back(e);
    }
  }
  if (in_class) return Unsupported("an unterminated character class", pattern);
  return out;
}

absl::StatusOr<std::unique_ptr<SplitRegex>> SplitRegex::Create(absl::string_view pattern,
                                                               bool literal) {
  std::string translated;
  uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK;
  if (literal) {
    translated = std::string(pattern);
    options |= PCRE2_LITERAL;
  } else {
    absl::StatusOr<std::string> t = TranslateOnigurumaPattern(pattern);
    if (!t.ok()) return t.status();
    translated = *std::move(t);
    options |= PCRE2_UCP | PCRE2_MULTILINE;
  }
  pcre2_compile_context* ccontext = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(ccontext, PCRE2_NEWLINE_LF);  // Oniguruma: only \n ends a line
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), options,
                    &error, &error_offset, ccontext);
  pcre2_compile_context_free(ccontext);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(
        absl::StrCat("pre-tokenizer regex does not compile at offset ", error_offset, ": ",
                     reinterpret_cast<const char*>(message), " (pattern: ", pattern, ")"));
  }
  const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<SplitRegex>(new SplitRegex(code, jit));
}

SplitRegex::~SplitRegex() { pcre2_code_free(code_); }

absl::Status SplitRegex::ForEachMatch(absl::string_view text,
                                      absl::FunctionRef<void(size_t, size_t)> on_match) const {
  MatchState& state = ThreadMatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE length = text.size();
  PCRE2_SIZE offset = 0;
  while (offset <= length) {
    const int rc = jit_ ? pcre2_jit_match(code_, subject, length, offset, 0, state.match_data,
                                          state.context)
                        : pcre2_match(code_, subject, length, offset, PCRE2_NO_UTF_CHECK,
                                      state.match_data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::ResourceExhaustedError(absl::StrCat(
          "pre-tokenizer regex failed at byte ", offset, " of a ", length,
          "-byte piece: ", reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    const size_t start = ovector[0], end = ovector[1];
    if (end > start) {
      on_match(start, end);
      offset = end;
    } else {
      // Empty match: step over one character.
      if (start >= length) break;
      offset = start + 1;
      while (offset < length && (static_cast<uint8_t>(text[offset]) & 0xC0) == 0x80) ++offset;
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::tokenizer
