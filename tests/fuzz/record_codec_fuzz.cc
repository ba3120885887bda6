// Stored ledger values: the strict decoder never crashes on any bytes, and
// what it accepts is canonical — re-encoding the decoded record gives back
// the same public section (and, unless erased, the same salt and personal
// section and digest), which decodes to the same record again.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "bastion/ledger.h"
#include "bastion/record.h"
#include "fuzz_check.h"
#include "ledger/record_codec.h"

namespace bastion {
namespace {

void CheckRoundTrip(std::string_view value) {
  codec::ValueView view;
  const Status parsed = codec::ParseValue(value, &view);
  StoredRecord stored;
  const Status decoded = codec::DecodeValue(value, &stored);
  const Result<StoredRecord> via_api = DecodeStoredRecord(value);
  FUZZ_CHECK(via_api.ok() == decoded.ok(), "DecodeStoredRecord and DecodeValue disagree");
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.IsCorruption() && !decoded.message().empty(), "error is %s",
               decoded.ToString().c_str());
    return;
  }
  FUZZ_CHECK(parsed.ok(), "DecodeValue accepted what ParseValue rejects");
  FUZZ_CHECK(via_api->record == stored.record && via_api->seq == stored.seq,
             "DecodeStoredRecord and DecodeValue decode differently");
  FUZZ_CHECK(stored.personal_data_erased == view.erased(), "erased flag lost");
  FUZZ_CHECK(std::memcmp(stored.prev_hash.data(), view.prev_hash.data(), 32) == 0 &&
                 std::memcmp(stored.hash.data(), view.hash.data(), 32) == 0,
             "hashes not copied from the header");

  uint8_t salt[codec::kSaltBytes] = {};
  if (!view.erased()) std::memcpy(salt, view.personal.data(), codec::kSaltBytes);
  std::string again;
  Hash digest;
  codec::EncodeValue(stored.record, salt, &again, &digest);
  codec::ValueView again_view;
  FUZZ_CHECK(codec::ParseValue(again, &again_view).ok(), "re-encoded value does not parse");
  FUZZ_CHECK(again_view.body == view.body,
             "public section is not canonical: %zu bytes in, %zu bytes re-encoded",
             view.body.size(), again_view.body.size());
  if (!view.erased()) {
    FUZZ_CHECK(again_view.personal == view.personal,
               "personal section is not canonical: %zu bytes in, %zu bytes re-encoded",
               view.personal.size(), again_view.personal.size());
    FUZZ_CHECK(digest == codec::PersonalDigest(view.personal), "personal digest differs");
  }

  StoredRecord round;
  const Status redecoded = codec::DecodeValue(again, &round);
  FUZZ_CHECK(redecoded.ok(), "re-encoded value does not decode: %s",
             redecoded.ToString().c_str());
  FUZZ_CHECK(round.record == stored.record, "decode(encode(decode(x))) != decode(x)");
}

}  // namespace
}  // namespace bastion

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bastion::CheckRoundTrip(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
