// Loads AgentConfig from YAML through the schema table; yaml-cpp exceptions stop at this file.
#include "server/config/config_yaml.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <memory>
#include <sstream>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/config/config_schema.h"
#include "server/config/upstream_schema.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/mark.h"
#include "yaml-cpp/parser.h"

namespace alknet::config {
namespace {

// Deeper documents are rejected while parsing, before yaml-cpp's recursive descent can
// exhaust the stack. The schema itself needs 2 levels.
constexpr size_t kMaxDepth = 64;
constexpr size_t kMaxFileBytes = size_t{4} << 20;

// A parsed YAML node; the whole tree is owned by its TreeBuilder. Aliases keep their own
// position and point at the anchored node (no copies, so alias bombs cost nothing).
struct Node {
  enum class Kind { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  YAML::Mark mark;
  std::string scalar;
  std::vector<const Node*> items;                            // kSequence
  std::vector<std::pair<const Node*, const Node*>> entries;  // kMap, in document order
  const Node* alias_of = nullptr;

  const Node& Target() const { return alias_of != nullptr ? *alias_of : *this; }
};

std::string_view KindName(Node::Kind kind) {
  switch (kind) {
    case Node::Kind::kNull: return "an empty value";
    case Node::Kind::kScalar: return "a scalar";
    case Node::Kind::kSequence: return "a list";
    case Node::Kind::kMap: return "a mapping";
  }
  return "a value";
}

// Thrown by TreeBuilder from inside yaml-cpp's callbacks; caught in ApplyYaml only.
struct BuildError {
  YAML::Mark mark;
  std::string message;
};

// Builds a Node tree from parser events, bounding nesting depth and the document count.
class TreeBuilder : public YAML::EventHandler {
 public:
  const Node* root() const { return root_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_++ > 0) throw BuildError{mark, "only one YAML document is allowed"};
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(New(Node::Kind::kNull, mark), anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw BuildError{mark, "the referenced anchor is not defined"};
    Node* node = New(Node::Kind::kNull, mark);
    node->alias_of = it->second;
    Add(node, 0);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                const std::string& value) override {
    Node* node = New(Node::Kind::kScalar, mark);
    node->scalar = value;
    Add(node, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    Open(New(Node::Kind::kSequence, mark), anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    Open(New(Node::Kind::kMap, mark), anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    Node* node;
    const Node* pending_key = nullptr;  // kMap: a key waiting for its value
  };

  Node* New(Node::Kind kind, const YAML::Mark& mark) {
    nodes_.push_back(std::make_unique<Node>());
    nodes_.back()->kind = kind;
    nodes_.back()->mark = mark;
    return nodes_.back().get();
  }

  void Add(Node* node, YAML::anchor_t anchor) {
    if (anchor != 0) anchors_[anchor] = node;
    if (stack_.empty()) {
      root_ = node;
      return;
    }
    Frame& top = stack_.back();
    if (top.node->kind == Node::Kind::kSequence) {
      top.node->items.push_back(node);
    } else if (top.pending_key == nullptr) {
      top.pending_key = node;
    } else {
      top.node->entries.emplace_back(top.pending_key, node);
      top.pending_key = nullptr;
    }
  }

  void Open(Node* node, YAML::anchor_t anchor) {
    if (stack_.size() >= kMaxDepth) {
      throw BuildError{node->mark, absl::StrCat("nested deeper than ", kMaxDepth, " levels")};
    }
    Add(node, anchor);
    stack_.push_back(Frame{node});
  }

  void Close() {
    if (!stack_.empty()) stack_.pop_back();
  }

  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, const Node*> anchors_;
  const Node* root_ = nullptr;
  int documents_ = 0;
};

// Keys and values quoted in messages: escaped and shortened.
std::string Shown(std::string_view text) {
  constexpr size_t kMaxShown = 60;
  if (text.size() > kMaxShown)
    return absl::StrCat(absl::CHexEscape(Sv(text.substr(0, kMaxShown))), "...");
  return absl::CHexEscape(Sv(text));
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean 'listen'?)" for a close key at this level, or the key's place elsewhere
// in the schema (" (did you mean 'max_startups' under 'limits'?)"), or "".
std::string Suggestion(std::string_view key, std::string_view prefix) {
  if (key.empty() || key.size() > 64) return "";
  std::string normalized = absl::AsciiStrToLower(Sv(key));
  for (char& c : normalized) {
    if (c == '-') c = '_';
  }
  size_t threshold = normalized.size() <= 4 ? 1 : normalized.size() <= 8 ? 2 : 3;
  std::string best;
  size_t best_distance = threshold + 1;
  for (const FieldSpec& field : Fields()) {
    std::string_view path = field.yaml_path;
    if (!absl::StartsWith(Sv(path), Sv(prefix))) continue;
    std::string_view candidate = path.substr(prefix.size());
    candidate = candidate.substr(0, candidate.find('.'));
    size_t distance = EditDistance(normalized, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  if (!best.empty()) return absl::StrCat(" (did you mean '", best, "'?)");
  for (const FieldSpec& field : Fields()) {
    std::string_view path = field.yaml_path;
    size_t dot = path.rfind('.');
    std::string_view leaf = dot == std::string_view::npos ? path : path.substr(dot + 1);
    if (leaf != normalized && path != normalized) continue;
    if (dot == std::string_view::npos) {
      return absl::StrCat(" (did you mean '", Sv(leaf), "' at the top level?)");
    }
    return absl::StrCat(" (did you mean '", Sv(leaf), "' under '", Sv(path.substr(0, dot)), "'?)");
  }
  return "";
}

bool IsSection(std::string_view path) {
  for (const FieldSpec& field : Fields()) {
    if (field.yaml_path.size() > path.size() && absl::StartsWith(Sv(field.yaml_path), Sv(path)) &&
        field.yaml_path[path.size()] == '.') {
      return true;
    }
  }
  return false;
}

// Applies a parsed document to a config, producing "source:line:col: message" errors.
class Applier {
 public:
  explicit Applier(std::string_view source) : source_(source) {}

  absl::Status Error(const YAML::Mark& mark, std::string_view message) const {
    if (mark.is_null())
      return absl::InvalidArgumentError(absl::StrCat(Sv(source_), ": ", Sv(message)));
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(source_), ":", mark.line + 1, ":", mark.column + 1, ": ", Sv(message)));
  }

  absl::Status ApplyDocument(const Node* root, AgentConfig& config) const {
    if (root == nullptr || root->Target().kind == Node::Kind::kNull) return absl::OkStatus();
    if (root->Target().kind != Node::Kind::kMap) {
      return Error(root->mark, absl::StrCat("the document must be a mapping, got ",
                                            Sv(KindName(root->Target().kind))));
    }
    return ApplyMap(root->Target(), "", "root", config);
  }

 private:
  // `prefix` is "" at the root and "limits." inside limits; `parent` names the mapping.
  absl::Status ApplyMap(const Node& map, std::string_view prefix, std::string_view parent,
                        AgentConfig& config) const {
    std::vector<const Node*> seen;
    for (const auto& [key_node, value_node] : map.entries) {
      const Node& key = key_node->Target();
      if (key.kind != Node::Kind::kScalar) {
        return Error(key_node->mark,
                     absl::StrCat("keys under '", Sv(parent), "' must be scalars, got ",
                                  Sv(KindName(key.kind))));
      }
      for (const Node* earlier : seen) {
        if (earlier->Target().scalar == key.scalar) {
          return Error(key_node->mark,
                       absl::StrCat("duplicate key '", Shown(key.scalar), "' under '", Sv(parent),
                                    "' (first at line ", earlier->mark.line + 1, ")"));
        }
      }
      seen.push_back(key_node);
      // Dotted keys ("limits.max_startups") are not schema keys: sections nest.
      bool dotted = key.scalar.find('.') != std::string::npos;
      std::string path = absl::StrCat(Sv(prefix), key.scalar);
      if (const FieldSpec* field = dotted ? nullptr : FindFieldByYamlPath(path); field != nullptr) {
        if (absl::Status status = ApplyField(*field, *key_node, *value_node, config);
            !status.ok()) {
          return status;
        }
      } else if (!dotted && IsSection(path)) {
        const Node& value = value_node->Target();
        if (value.kind == Node::Kind::kNull) continue;  // "limits:" with nothing under it
        if (value.kind != Node::Kind::kMap) {
          return Error(value_node->mark,
                       absl::StrCat(path, ": expected a mapping, got ", Sv(KindName(value.kind))));
        }
        if (absl::Status status = ApplyMap(value, absl::StrCat(path, "."), key.scalar, config);
            !status.ok()) {
          return status;
        }
      } else if (!dotted && path == "forwarding.rules") {
        if (absl::Status status = ApplyForwardingRules(*value_node, config); !status.ok()) {
          return status;
        }
      } else if (!dotted && path == "upstreams") {
        if (absl::Status status = ApplyUpstreams(*key_node, *value_node, config); !status.ok()) {
          return status;
        }
      } else {
        return Error(key_node->mark, absl::StrCat("unknown key '", Shown(key.scalar), "' under '",
                                                  Sv(parent), "'", Suggestion(key.scalar, prefix)));
      }
    }
    return absl::OkStatus();
  }

  // `forwarding.rules:` is a list of mappings, each key through fwd::SetRuleField; a list
  // replaces the earlier one. Errors read "<file>:line:col: forwarding.rules[2].cidrs[0]: ...".
  absl::Status ApplyForwardingRules(const Node& node, AgentConfig& config) const {
    const Node& value = node.Target();
    config.forwarding.rules.clear();
    if (value.kind == Node::Kind::kNull) return absl::OkStatus();
    if (value.kind != Node::Kind::kSequence) {
      return Error(node.mark, absl::StrCat("forwarding.rules: expected a list of mappings, got ",
                                           Sv(KindName(value.kind))));
    }
    for (size_t i = 0; i < value.items.size(); ++i) {
      std::string where = absl::StrCat("forwarding.rules[", i, "]");
      const Node& item = value.items[i]->Target();
      if (item.kind != Node::Kind::kMap) {
        return Error(value.items[i]->mark,
                     absl::StrCat(where, ": expected a mapping, got ", Sv(KindName(item.kind))));
      }
      fwd::ForwardRule rule;
      std::vector<const Node*> seen;
      bool has_action = false;
      for (const auto& [key_node, field_node] : item.entries) {
        const Node& key = key_node->Target();
        if (key.kind != Node::Kind::kScalar) {
          return Error(key_node->mark, absl::StrCat("keys under '", where, "' must be scalars"));
        }
        for (const Node* earlier : seen) {
          if (earlier->Target().scalar == key.scalar) {
            return Error(key_node->mark,
                         absl::StrCat("duplicate key '", Shown(key.scalar), "' under '", where,
                                      "' (first at line ", earlier->mark.line + 1, ")"));
          }
        }
        seen.push_back(key_node);
        bool known = false;
        for (std::string_view candidate : fwd::RuleKeys()) known = known || candidate == key.scalar;
        if (!known) {
          return Error(key_node->mark,
                       absl::StrCat("unknown key '", Shown(key.scalar), "' under '", where,
                                    "' (keys: name, action, hosts, cidrs, ports, keys, roles, "
                                    "transports, direction)"));
        }
        has_action = has_action || key.scalar == "action";
        std::string what = absl::StrCat(where, ".", key.scalar);
        // Clang 14 cannot capture a structured binding: the key's mark goes in by value.
        auto set_one = [&, key_mark = key_node->mark](const Node& scalar_node,
                                                     std::string_view label) -> absl::Status {
          const Node& scalar = scalar_node.Target();
          if (scalar.kind != Node::Kind::kScalar) {
            return Error(scalar_node.mark.is_null() ? key_mark : scalar_node.mark,
                         absl::StrCat(Sv(label), scalar.kind == Node::Kind::kNull
                                                     ? ": missing value"
                                                     : ": expected a scalar"));
          }
          if (absl::Status status = fwd::SetRuleField(rule, key.scalar, scalar.scalar); !status.ok()) {
            return Error(scalar_node.mark, absl::StrCat(Sv(label), ": ", status.message()));
          }
          return absl::OkStatus();
        };
        const Node& field = field_node->Target();
        if (fwd::IsRuleListKey(key.scalar) && field.kind == Node::Kind::kSequence) {
          for (size_t k = 0; k < field.items.size(); ++k) {
            if (absl::Status status = set_one(*field.items[k], absl::StrCat(what, "[", k, "]"));
                !status.ok()) {
              return status;
            }
          }
          continue;
        }
        if (absl::Status status = set_one(*field_node, what); !status.ok()) return status;
      }
      if (!has_action) {
        return Error(value.items[i]->mark, absl::StrCat(where, ".action: missing (allow or deny)"));
      }
      config.forwarding.rules.push_back(std::move(rule));
      if (absl::Status status = fwd::ValidateRules(config.forwarding.rules); !status.ok()) {
        return Error(value.items[i]->mark, StdSv(status.message()));
      }
    }
    return absl::OkStatus();
  }

  // `upstreams:` is a list of mappings, each through the upstream field table; a list replaces
  // the earlier one, an empty value empties it.
  absl::Status ApplyUpstreams(const Node& key, const Node& node, AgentConfig& config) const {
    const Node& value = node.Target();
    config.upstreams.clear();
    if (value.kind == Node::Kind::kNull) return absl::OkStatus();
    if (value.kind != Node::Kind::kSequence) {
      return Error(node.mark, absl::StrCat("upstreams: expected a list of mappings, got ",
                                           Sv(KindName(value.kind))));
    }
    for (size_t i = 0; i < value.items.size(); ++i) {
      std::string where = absl::StrCat("upstreams[", i, "]");
      const Node& item = value.items[i]->Target();
      if (item.kind != Node::Kind::kMap) {
        return Error(value.items[i]->mark,
                     absl::StrCat(where, ": expected a mapping, got ", Sv(KindName(item.kind))));
      }
      UpstreamConfig upstream;
      std::vector<const Node*> seen;
      for (const auto& [field_key_node, field_value_node] : item.entries) {
        const Node& field_key = field_key_node->Target();
        if (field_key.kind != Node::Kind::kScalar) {
          return Error(field_key_node->mark, absl::StrCat("keys under '", where,
                                                          "' must be scalars, got ",
                                                          Sv(KindName(field_key.kind))));
        }
        for (const Node* earlier : seen) {
          if (earlier->Target().scalar == field_key.scalar) {
            return Error(field_key_node->mark,
                         absl::StrCat("duplicate key '", Shown(field_key.scalar), "' under '",
                                      where, "' (first at line ", earlier->mark.line + 1, ")"));
          }
        }
        seen.push_back(field_key_node);
        const UpstreamFieldSpec* field = FindUpstreamFieldByKey(field_key.scalar);
        if (field == nullptr) {
          std::string hint;
          size_t best = 4;
          for (const UpstreamFieldSpec& candidate : UpstreamFields()) {
            size_t distance = EditDistance(field_key.scalar, candidate.key);
            if (distance < best) {
              best = distance;
              hint = absl::StrCat(" (did you mean '", Sv(candidate.key), "'?)");
            }
          }
          return Error(field_key_node->mark, absl::StrCat("unknown key '", Shown(field_key.scalar),
                                                          "' under '", where, "'", hint));
        }
        std::string what = absl::StrCat(where, ".", Sv(field->key));
        auto set_one = [&](const Node& scalar_node, std::string_view label,
                           const YAML::Mark& missing_at) -> absl::Status {
          const Node& scalar = scalar_node.Target();
          if (scalar.kind == Node::Kind::kNull) {
            return Error(missing_at, absl::StrCat(Sv(label), ": missing value"));
          }
          if (scalar.kind != Node::Kind::kScalar) {
            return Error(scalar_node.mark, absl::StrCat(Sv(label), ": expected a scalar, got ",
                                                        Sv(KindName(scalar.kind))));
          }
          if (absl::Status status = SetUpstreamField(upstream, *field, scalar.scalar); !status.ok()) {
            return Error(scalar_node.mark, absl::StrCat(Sv(label), ": ", status.message()));
          }
          return absl::OkStatus();
        };
        const Node& field_value = field_value_node->Target();
        if (field->kind == FieldKind::kList) {
          ClearUpstreamListField(upstream, *field);
          if (field_value.kind == Node::Kind::kNull) continue;
          if (field_value.kind == Node::Kind::kMap) {
            return Error(field_value_node->mark, absl::StrCat(what, ": expected a list, got a mapping"));
          }
          if (field_value.kind == Node::Kind::kScalar) {
            if (absl::Status status = set_one(*field_value_node, what, field_key_node->mark);
                !status.ok()) {
              return status;
            }
            continue;
          }
          for (size_t k = 0; k < field_value.items.size(); ++k) {
            const Node& element = *field_value.items[k];
            if (absl::Status status = set_one(element, absl::StrCat(what, "[", k, "]"), element.mark);
                !status.ok()) {
              return status;
            }
          }
          continue;
        }
        if (absl::Status status = set_one(*field_value_node, what, field_key_node->mark);
            !status.ok()) {
          return status;
        }
      }
      config.upstreams.push_back(std::move(upstream));
    }
    (void)key;
    return absl::OkStatus();
  }

  // `missing_at` locates a missing value: an empty value's own mark is where the next token starts.
  absl::Status SetScalar(const FieldSpec& field, const Node& node, std::string_view what,
                         const YAML::Mark& missing_at, AgentConfig& config) const {
    const Node& value = node.Target();
    if (value.kind == Node::Kind::kNull) {
      return Error(missing_at, absl::StrCat(Sv(what), ": missing value"));
    }
    if (value.kind != Node::Kind::kScalar) {
      return Error(node.mark,
                   absl::StrCat(Sv(what), ": expected a scalar, got ", Sv(KindName(value.kind))));
    }
    if (absl::Status status = SetField(config, field, value.scalar); !status.ok()) {
      return Error(node.mark, StdSv(status.message()));
    }
    return absl::OkStatus();
  }

  absl::Status ApplyField(const FieldSpec& field, const Node& key, const Node& node,
                          AgentConfig& config) const {
    if (field.kind == FieldKind::kScalar) {
      return SetScalar(field, node, field.yaml_path, key.mark, config);
    }
    // A YAML list replaces the earlier value; a lone scalar is a one-element list and an empty
    // value an empty list.
    ClearListField(config, field);
    const Node& value = node.Target();
    switch (value.kind) {
      case Node::Kind::kNull: return absl::OkStatus();
      case Node::Kind::kScalar: return SetScalar(field, node, field.yaml_path, key.mark, config);
      case Node::Kind::kMap:
        return Error(node.mark,
                     absl::StrCat(Sv(field.yaml_path), ": expected a list, got a mapping"));
      case Node::Kind::kSequence: break;
    }
    for (size_t i = 0; i < value.items.size(); ++i) {
      std::string what = absl::StrCat(Sv(field.yaml_path), "[", i, "]");
      const Node& item = *value.items[i];
      if (absl::Status status = SetScalar(field, item, what, item.mark, config); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  std::string_view source_;
};

}  // namespace

absl::Status ApplyYaml(std::string_view yaml_text, std::string_view source_name,
                       AgentConfig& config) {
  Applier applier(source_name);
  TreeBuilder builder;
  try {
    std::istringstream in{std::string(yaml_text)};
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const BuildError& error) {
    return applier.Error(error.mark, error.message);
  } catch (const YAML::Exception& error) {
    return applier.Error(error.mark, error.msg);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source_name), ": ", error.what()));
  }
  AgentConfig updated = config;
  if (absl::Status status = applier.ApplyDocument(builder.root(), updated); !status.ok()) {
    return status;
  }
  config = std::move(updated);
  return absl::OkStatus();
}

absl::Status ApplyYamlFile(const std::string& path, AgentConfig& config) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (file == nullptr) {
    return ErrnoStatus(absl::StrCat("cannot open config file '", path, "'"), errno);
  }
  std::string text;
  char buffer[16384];
  while (true) {
    errno = 0;
    size_t n = std::fread(buffer, 1, sizeof(buffer), file.get());
    int read_errno = errno;
    if (std::ferror(file.get())) {
      return ErrnoStatus(absl::StrCat("cannot read config file '", path, "'"),
                         read_errno != 0 ? read_errno : EIO);
    }
    text.append(buffer, n);
    if (text.size() > kMaxFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": config file is larger than ", kMaxFileBytes >> 20, " MiB"));
    }
    if (n < sizeof(buffer)) break;
  }
  return ApplyYaml(text, path, config);
}

}  // namespace alknet::config
