#ifndef DSV3_COMMON_CLI_H_
#define DSV3_COMMON_CLI_H_

#include <string>
#include <vector>

namespace dsv3 {

// Parses Abseil flags; `--foo-bar` is accepted for `--foo_bar`. `--help` / `-h` prints `usage` and this project's flags (name,
// default, help; Abseil's own flags left out) to stdout and exits 0; an unknown or
// malformed flag prints the error and exits 1 (Abseil's own handling). Returns the positional arguments,
// argv[0] first.
std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const std::string& usage);

// The help text that --help prints.
std::string FlagsHelpText(const std::string& usage);

}  // namespace dsv3

#endif  // DSV3_COMMON_CLI_H_
