// Counts global operator new calls in a binary that links alknet_counting_new (the allocation
// benches, TimerAllocationTest).
#pragma once

#include <cstdint>

namespace alknet {

// Calls to the global operator new since the process started.
uint64_t OperatorNewCount();

}  // namespace alknet
