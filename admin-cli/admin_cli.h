// alknet-admin: the command-line client of the agent's admin API (gRPC), as a library so that
// main() stays thin. Exit codes: 0 ok, 1 the server (or the connection) said no — the gRPC
// status name is on stderr —, 2 usage errors.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace alknet::admin_cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitServerError = 1;
inline constexpr int kExitUsage = 2;

// Runs one command; `in` is read for "keys add -".
int Run(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err);

std::string UsageText();

}  // namespace alknet::admin_cli
