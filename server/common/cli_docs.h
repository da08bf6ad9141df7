// A program's command table, and what is written from it: --help text, bash and zsh completion
// scripts and the man page, so that none of them can name a flag the others do not.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace alknet::cli {

struct Option {
  std::string name;   // "--socket", "-h"
  std::string value;  // "PATH"; empty: the option takes no value
  std::string help;   // one line
};

struct Command {
  std::vector<std::string> words;    // {"keys", "add"}
  std::string args;                  // positional arguments for the synopsis: "FILE|-"
  std::string help;                  // one line
  std::vector<Option> options;       // besides the program's global options
  std::vector<std::string> choices;  // completions of the first positional argument
};

struct OptionGroup {
  std::string title;  // "Connection", "Configuration flags"
  std::vector<Option> options;
};

struct Program {
  std::string name;         // "alknet-admin"
  std::string summary;      // the man page's NAME line
  std::string synopsis;     // after the name: "[connection] [--json] COMMAND ..."
  std::string description;  // paragraphs separated by blank lines
  std::vector<Command> commands;
  std::vector<OptionGroup> global_options;  // valid with every command
  // Further man page sections and the end of --help: (title, paragraphs).
  std::vector<std::pair<std::string, std::string>> sections;
};

// The command whose words are exactly `words`, or nullptr.
const Command* FindCommand(const Program& program, const std::vector<std::string>& words);

// --help of one command: its synopsis, help, own options and the global options.
std::string CommandHelp(const Program& program, const Command& command);

// --help of the program, or of the commands under `prefix` ({"keys"}): the description, each
// command with its own options, the global options and the closing sections.
std::string ProgramHelp(const Program& program, const std::vector<std::string>& prefix = {});

// A bash script defining the completion function and `complete -F` for program.name.
std::string BashCompletion(const Program& program);

// A zsh completion function file (#compdef), for a directory on $fpath.
std::string ZshCompletion(const Program& program);

// The man page in section 1, in roff (man macros).
std::string ManPage(const Program& program, std::string_view version);

}  // namespace alknet::cli
