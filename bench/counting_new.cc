// Replaces the global operator new/delete with counting malloc/free wrappers. Kept in its own
// translation unit so GCC -O3 never sees a free() paired with an inlined new (-Wmismatched-new-delete).
#include "bench/counting_new.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_operator_new_calls{0};
}  // namespace

namespace alknet {
uint64_t OperatorNewCount() { return g_operator_new_calls.load(std::memory_order_relaxed); }
}  // namespace alknet

void* operator new(std::size_t n) {
  g_operator_new_calls.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
