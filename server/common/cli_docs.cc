// Writes --help text, bash/zsh completion scripts and the man page from one command table.
#include "server/common/cli_docs.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "server/common/strings.h"

namespace alknet::cli {
namespace {

std::string Joined(const std::vector<std::string>& words) { return absl::StrJoin(words, " "); }

// "keys add FILE|-"
std::string Usage(const Command& command) {
  return command.args.empty() ? Joined(command.words) : absl::StrCat(Joined(command.words), " ", command.args);
}

std::string OptionUsage(const Option& option) {
  return option.value.empty() ? option.name : absl::StrCat(option.name, " ", option.value);
}

void AppendOptionLines(std::string& text, const std::vector<Option>& options) {
  for (const Option& option : options) {
    std::string usage = OptionUsage(option);
    if (usage.size() < 30) {
      absl::StrAppend(&text, "  ", usage, std::string(30 - usage.size(), ' '), option.help, "\n");
    } else {
      absl::StrAppend(&text, "  ", usage, "\n", std::string(32, ' '), option.help, "\n");
    }
  }
}

std::vector<const Option*> GlobalOptions(const Program& program) {
  std::vector<const Option*> options;
  for (const OptionGroup& group : program.global_options) {
    for (const Option& option : group.options) options.push_back(&option);
  }
  return options;
}

// Every option that takes a value, for skipping values and completing file names after them.
std::vector<std::string> ValueOptions(const Program& program) {
  std::set<std::string> names;
  for (const Option* option : GlobalOptions(program)) {
    if (!option->value.empty()) names.insert(option->name);
  }
  for (const Command& command : program.commands) {
    for (const Option& option : command.options) {
      if (!option.value.empty()) names.insert(option.name);
    }
  }
  return {names.begin(), names.end()};
}

std::string GlobalOptionNames(const Program& program) {
  std::vector<std::string> names;
  for (const Option* option : GlobalOptions(program)) names.push_back(option->name);
  return Joined(names);
}

// `text` wrapped to lines of at most 78 characters, continuation lines after `indent` spaces.
std::string Wrap(std::string_view text, size_t indent) {
  std::string out;
  size_t column = 0;
  for (absl::string_view word : absl::StrSplit(Sv(text), absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (column > 0 && column + 1 + word.size() > 78) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '));
      column = indent;
    } else if (column > 0) {
      out += ' ';
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
  }
  return out;
}

// For each command path prefix ("", "keys", ...): the words that may follow it.
std::vector<std::pair<std::string, std::vector<std::string>>> NextWords(const Program& program) {
  std::vector<std::pair<std::string, std::vector<std::string>>> result;
  auto add = [&](const std::string& prefix, const std::string& word) {
    auto it = std::find_if(result.begin(), result.end(), [&](const auto& entry) { return entry.first == prefix; });
    if (it == result.end()) {
      result.emplace_back(prefix, std::vector<std::string>{});
      it = result.end() - 1;
    }
    if (std::find(it->second.begin(), it->second.end(), word) == it->second.end()) it->second.push_back(word);
  };
  for (const Command& command : program.commands) {
    std::vector<std::string> prefix;
    for (const std::string& word : command.words) {
      add(Joined(prefix), word);
      prefix.push_back(word);
    }
    for (const std::string& choice : command.choices) add(Joined(command.words), choice);
  }
  return result;
}

std::string FunctionName(const Program& program) {
  return absl::StrCat("_", absl::StrReplaceAll(program.name, {{"-", "_"}}));
}

// The body shared by bash and zsh: `paren` is "(" in zsh case patterns, "" in bash.
struct ShellDialect {
  std::string first_word;    // index of the first argument in the words array
  std::string words_array;   // COMP_WORDS / words
  std::string current;       // COMP_CWORD / CURRENT
  std::string paren;
};

std::string ShellBody(const Program& program, const ShellDialect& sh) {
  std::string value_pattern = absl::StrJoin(ValueOptions(program), "|");
  std::string text;
  absl::StrAppend(&text, "  local cur=\"${", sh.words_array, "[", sh.current, "]}\"\n",
                  "  local prev=\"${", sh.words_array, "[", sh.current, "-1]}\"\n",
                  "  local cmd=\"\" w i\n",
                  "  for ((i = ", sh.first_word, "; i < ", sh.current, "; i++)); do\n",
                  "    w=\"${", sh.words_array, "[i]}\"\n",
                  "    case \"$w\" in\n",
                  "      ", sh.paren, "--*=*) ;;\n");
  if (!value_pattern.empty()) {
    absl::StrAppend(&text, "      ", sh.paren, value_pattern, ")\n",
                    "        [[ \"${", sh.words_array, "[i+1]}\" == \"=\" ]] && ((i++))\n",
                    "        ((i++)) ;;\n");
  }
  absl::StrAppend(&text, "      ", sh.paren, "-*|=) ;;\n",
                  "      ", sh.paren, "*) cmd=\"${cmd:+$cmd }$w\" ;;\n",
                  "    esac\n",
                  "  done\n");
  if (!value_pattern.empty()) {
    absl::StrAppend(&text, "  case \"$prev\" in\n", "    ", sh.paren, value_pattern, ") __FILES__; return 0 ;;\n",
                    "  esac\n");
  }
  absl::StrAppend(&text, "  local next=\"\" opts=\"", GlobalOptionNames(program), "\"\n",
                  "  case \"$cmd\" in\n");
  for (const auto& [prefix, words] : NextWords(program)) {
    absl::StrAppend(&text, "    ", sh.paren, "\"", prefix, "\") next=\"", Joined(words), "\" ;;\n");
  }
  absl::StrAppend(&text, "  esac\n", "  case \"$cmd\" in\n");
  for (const Command& command : program.commands) {
    if (command.options.empty()) continue;
    std::vector<std::string> names;
    for (const Option& option : command.options) names.push_back(option.name);
    std::string path = Joined(command.words);
    absl::StrAppend(&text, "    ", sh.paren, "\"", path, "\"|\"", path, " \"*) opts=\"$opts ", Joined(names),
                    "\" ;;\n");
  }
  absl::StrAppend(&text, "  esac\n");
  return text;
}

// Roff text: backslashes and hyphens escaped, a break point after each comma (long algorithm
// lists), no line starting with a control character.
std::string Roff(std::string_view text) {
  std::string out = absl::StrReplaceAll(Sv(text), {{"\\", "\\e"}, {"-", "\\-"}, {",", ",\\:"}});
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
  return out;
}

std::string RoffParagraphs(std::string_view text) {
  std::string out;
  bool first = true;
  for (absl::string_view paragraph : absl::StrSplit(Sv(text), "\n\n", absl::SkipWhitespace())) {
    if (!first) out += ".PP\n";
    first = false;
    for (absl::string_view line : absl::StrSplit(paragraph, '\n', absl::SkipWhitespace())) {
      absl::StrAppend(&out, Roff(StdSv(line)), "\n");
    }
  }
  return out;
}

std::string RoffOption(const Option& option) {
  std::string out = absl::StrCat(".TP\n\\fB", Roff(option.name), "\\fR");
  if (!option.value.empty()) absl::StrAppend(&out, " \\fI", Roff(option.value), "\\fR");
  absl::StrAppend(&out, "\n", Roff(option.help), "\n");
  return out;
}

}  // namespace

const Command* FindCommand(const Program& program, const std::vector<std::string>& words) {
  for (const Command& command : program.commands) {
    if (command.words == words) return &command;
  }
  return nullptr;
}

std::string CommandHelp(const Program& program, const Command& command) {
  std::string text = absl::StrCat("Usage: ", program.name, " ", Usage(command),
                                  command.options.empty() ? "" : " [options]", "\n\n", command.help, "\n");
  if (!command.options.empty()) {
    absl::StrAppend(&text, "\nOptions:\n");
    AppendOptionLines(text, command.options);
  }
  for (const OptionGroup& group : program.global_options) {
    absl::StrAppend(&text, "\n", group.title, ":\n");
    AppendOptionLines(text, group.options);
  }
  return text;
}

std::string ProgramHelp(const Program& program, const std::vector<std::string>& prefix) {
  std::string text = absl::StrCat("Usage: ", program.name, " ", program.synopsis, "\n\n");
  if (prefix.empty()) {
    for (absl::string_view paragraph : absl::StrSplit(program.description, "\n\n")) {
      absl::StrAppend(&text, Wrap(StdSv(paragraph), 0), "\n\n");
    }
  }
  absl::StrAppend(&text, "Commands:\n");
  for (const Command& command : program.commands) {
    if (command.words.size() < prefix.size() ||
        !std::equal(prefix.begin(), prefix.end(), command.words.begin())) {
      continue;
    }
    std::string usage = Usage(command);
    if (usage.size() < 30) {
      absl::StrAppend(&text, "  ", usage, std::string(30 - usage.size(), ' '), command.help, "\n");
    } else {
      absl::StrAppend(&text, "  ", usage, "\n", std::string(32, ' '), command.help, "\n");
    }
    for (const Option& option : command.options) {
      absl::StrAppend(&text, "      ", OptionUsage(option), ": ", option.help, "\n");
    }
  }
  for (const OptionGroup& group : program.global_options) {
    absl::StrAppend(&text, "\n", group.title, ":\n");
    AppendOptionLines(text, group.options);
  }
  if (prefix.empty()) {
    for (const auto& [title, body] : program.sections) {
      absl::StrAppend(&text, "\n", title, ": ", Wrap(body, 0), "\n");
    }
  }
  return text;
}

std::string BashCompletion(const Program& program) {
  std::string name = FunctionName(program);
  std::string body = ShellBody(program, {.first_word = "1", .words_array = "COMP_WORDS",
                                         .current = "COMP_CWORD", .paren = ""});
  body = absl::StrReplaceAll(body, {{"__FILES__", "COMPREPLY=($(compgen -f -- \"$cur\"))"}});
  return absl::StrCat("# bash completion for ", program.name, " (written by `", program.name,
                      " completion bash`; do not edit)\n", name, "() {\n", body,
                      "  if [[ \"$cur\" == -* ]]; then\n",
                      "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n",
                      "  elif [[ -n \"$next\" ]]; then\n",
                      "    COMPREPLY=($(compgen -W \"$next\" -- \"$cur\"))\n",
                      "  else\n",
                      "    COMPREPLY=($(compgen -f -- \"$cur\"))\n",
                      "  fi\n",
                      "  return 0\n",
                      "}\n",
                      "complete -o filenames -F ", name, " ", program.name, "\n");
}

std::string ZshCompletion(const Program& program) {
  std::string name = FunctionName(program);
  std::string body = ShellBody(program, {.first_word = "2", .words_array = "words",
                                         .current = "CURRENT", .paren = "("});
  body = absl::StrReplaceAll(body, {{"__FILES__", "_files"}});
  return absl::StrCat("#compdef ", program.name, "\n# zsh completion for ", program.name, " (written by `",
                      program.name, " completion zsh`; do not edit)\n", name, "() {\n", body,
                      "  if [[ \"$cur\" == -* ]]; then\n",
                      "    compadd -- ${=opts}\n",
                      "  elif [[ -n \"$next\" ]]; then\n",
                      "    compadd -- ${=next}\n",
                      "  else\n",
                      "    _files\n",
                      "  fi\n",
                      "}\n",
                      name, " \"$@\"\n");
}

std::string ManPage(const Program& program, std::string_view version) {
  std::string upper = program.name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) { return c >= 'a' && c <= 'z' ? c - 32 : c; });
  std::string text = absl::StrCat(".\\\" ", program.name, "(1), written by `", program.name,
                                  " manpage` from its command table; do not edit.\n",
                                  ".TH ", Roff(upper), " 1 \"\" \"alknet ", Roff(version), "\" \"User Commands\"\n",
                                  ".ad l\n",  // ragged right: long flag and algorithm lists

                                  ".SH NAME\n", Roff(program.name), " \\- ", Roff(program.summary), "\n",
                                  ".SH SYNOPSIS\n\\fB", Roff(program.name), "\\fR ", Roff(program.synopsis), "\n",
                                  ".SH DESCRIPTION\n", RoffParagraphs(program.description),
                                  ".SH COMMANDS\n");
  for (const Command& command : program.commands) {
    absl::StrAppend(&text, ".TP\n\\fB", Roff(Joined(command.words)), "\\fR");
    if (!command.args.empty()) absl::StrAppend(&text, " \\fI", Roff(command.args), "\\fR");
    absl::StrAppend(&text, "\n", Roff(command.help), "\n");
    if (!command.options.empty()) {
      absl::StrAppend(&text, ".RS\n");
      for (const Option& option : command.options) absl::StrAppend(&text, RoffOption(option));
      absl::StrAppend(&text, ".RE\n");
    }
  }
  absl::StrAppend(&text, ".SH OPTIONS\n");
  for (const OptionGroup& group : program.global_options) {
    absl::StrAppend(&text, ".SS ", Roff(group.title), "\n");
    for (const Option& option : group.options) absl::StrAppend(&text, RoffOption(option));
  }
  for (const auto& [title, body] : program.sections) {
    std::string section = title;
    std::transform(section.begin(), section.end(), section.begin(),
                   [](char c) { return c >= 'a' && c <= 'z' ? c - 32 : c; });
    absl::StrAppend(&text, ".SH ", Roff(section), "\n", RoffParagraphs(body));
  }
  return text;
}

}  // namespace alknet::cli
