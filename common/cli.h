#ifndef DSV3_COMMON_CLI_H_
#define DSV3_COMMON_CLI_H_

#include <string>
#include <vector>

namespace dsv3 {

// Parses Abseil flags; `--foo-bar` is accepted for `--foo_bar`. `--help` / `-h` prints `usage` and
// this project's flags (name, default, help; Abseil's own flags left out) to stdout and exits 0; an
// unknown or malformed flag prints the error and exits 1 (Abseil's own handling). Returns the
// positional arguments, argv[0] first.
std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const std::string& usage);

// The help text that --help prints.
std::string FlagsHelpText(const std::string& usage);

// Flags under a title, for the --help of one command of a multi-command binary (`dsv3 bench`):
// Abseil flags are process-wide, so each command says which of them it reads.
struct FlagGroup {
  std::string title;
  std::vector<std::string> names;
};

// `usage`, then each group's flags (name, default, help) under its title.
std::string FlagsHelpText(const std::string& usage, const std::vector<FlagGroup>& groups);

// The names of the flags given in argv[1..] before "--", as Abseil will read them: `--foo-bar`
// and `-foo_bar=1` give "foo_bar", `--nofoo` of a bool flag gives "foo"; the value of a
// non-bool flag given as a separate argument (`--foo 3`) is skipped. Unknown names are
// returned as written. Abseil's own flags (--flagfile, --fromenv, ...) are left out.
std::vector<std::string> FlagsOnCommandLine(int argc, char** argv);

}  // namespace dsv3

#endif  // DSV3_COMMON_CLI_H_
