// Names of forward kinds.
#include "server/client/forward.h"

namespace alknet {

std::string_view ForwardKindName(ForwardKind kind) {
  switch (kind) {
    case ForwardKind::kDynamic: return "dynamic";
    case ForwardKind::kLocal: return "local";
    case ForwardKind::kRemote: return "remote";
  }
  return "unknown";
}

}  // namespace alknet
