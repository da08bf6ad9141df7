// PendingBytes: a relay's unsent tail, consumed in place and never reallocated per chunk.
#include "server/common/pending_bytes.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace alknet {
namespace {

std::string_view View(const PendingBytes& bytes) { return {bytes.data(), bytes.size()}; }

TEST(PendingBytesTest, ConsumesFromTheFrontWithoutMovingTheRest) {
  PendingBytes pending(8);
  EXPECT_TRUE(pending.empty());
  pending.Assign("abcdef", 6);
  const char* start = pending.data();
  pending.Consume(2);
  EXPECT_EQ(View(pending), "cdef");
  EXPECT_EQ(pending.data(), start + 2);  // no memmove: the tail stays where it was
  pending.Consume(100);                  // more than held: empties
  EXPECT_TRUE(pending.empty());
}

TEST(PendingBytesTest, StorageIsKeptAcrossAssigns) {
  PendingBytes pending(8);
  pending.Assign("12345678", 8);
  const char* storage = pending.data();
  pending.Consume(8);
  pending.Assign("xyz", 3);
  EXPECT_EQ(pending.data(), storage);  // the same buffer: no allocation per chunk
  EXPECT_EQ(View(pending), "xyz");
}

TEST(PendingBytesTest, ALongerFirstTailGrowsOnceAndKeepsEveryByte) {
  PendingBytes pending(4);
  pending.Assign("0123456789", 10);
  EXPECT_EQ(View(pending), "0123456789");
  pending.Consume(3);
  EXPECT_EQ(View(pending), "3456789");
  pending.Clear();
  EXPECT_TRUE(pending.empty());
}

}  // namespace
}  // namespace alknet
