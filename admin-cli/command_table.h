// alknet-admin's command table: commands, their options and the global options. The parser,
// --help, the completion scripts and the man page are all written from it.
#pragma once

#include "server/common/cli_docs.h"

namespace alknet::admin_cli {

const cli::Program& AdminProgram();

}  // namespace alknet::admin_cli
