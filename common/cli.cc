#include "common/cli.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace dsv3 {
namespace {

// "  --name  (default: value)\n      help\n", one flag of a --help text.
void AppendFlagHelp(const absl::CommandLineFlag& flag, std::string* text) {
  const std::string def = flag.DefaultValue();
  absl::StrAppend(text, "  --", flag.Name(), "  (default: ", def.empty() ? "\"\"" : def,
                  ")\n      ", flag.Help(), "\n");
}

bool IsAbseilOwnFlag(absl::string_view name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && absl::StrContains(flag->Filename(), "absl/");
}

}  // namespace

std::string FlagsHelpText(const std::string& usage) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Abseil's own flags (--flagfile, --fromenv, ...) are not this program's interface.
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
    flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string text = usage + "\n\nflags:\n";
  for (const auto* flag : flags) AppendFlagHelp(*flag, &text);
  return text;
}

std::string FlagsHelpText(const std::string& usage, const std::vector<FlagGroup>& groups) {
  std::string text = usage + "\n";
  for (const FlagGroup& group : groups) {
    absl::StrAppend(&text, "\n", group.title, ":\n");
    for (const std::string& name : group.names) {
      const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      if (flag == nullptr) {  // a command naming a flag nobody defines: a bug, shown as such
        absl::StrAppend(&text, "  --", name, "  (NOT DEFINED: report this)\n");
        continue;
      }
      AppendFlagHelp(*flag, &text);
    }
  }
  return text;
}

std::vector<std::string> FlagsOnCommandLine(int argc, char** argv) {
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // a positional argument
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    std::string name(arg.substr(0, eq));
    std::replace(name.begin(), name.end(), '-', '_');
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      const absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = name.substr(2);
      }
    }
    if (flag != nullptr && eq == absl::string_view::npos && !flag->IsOfType<bool>()) ++i;
    if (IsAbseilOwnFlag(name)) continue;
    names.push_back(std::move(name));
  }
  return names;
}

std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const std::string& usage) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--")) break;
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h") ||
        !std::strcmp(argv[i], "-help")) {
      std::string text = FlagsHelpText(usage);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::exit(0);
    }
  }
  // Accept --foo-bar as --foo_bar (Abseil flag names cannot hold '-'); values untouched.
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (a[0] != '-' || a[1] != '-') continue;
    if (a[2] == '\0') break;  // "--" ends the flags
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
  absl::SetProgramUsageMessage(usage);
  // Abseil reports a bad flag on stderr and exits 1 itself.
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace dsv3
