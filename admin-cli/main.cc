// alknet-admin: the admin API's command-line client; all work happens in admin_cli.
#include <iostream>
#include <string>
#include <vector>

#include <libssh/libssh.h>

#include "admin-cli/admin_cli.h"

int main(int argc, char** argv) {
  ssh_init();
  std::vector<std::string> args(argv + 1, argv + argc);
  int code = alknet::admin_cli::Run(args, std::cin, std::cout, std::cerr);
  std::cout.flush();
  ssh_finalize();
  return code;
}
