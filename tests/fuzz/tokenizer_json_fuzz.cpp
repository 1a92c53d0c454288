// libFuzzer target: the tokenizer.json reader. Any bytes as tokenizer.json must give a tokenizer or
// a std::runtime_error naming the file and the component; a tokenizer it gives must encode text
// (its bytes and a fixed mixed-script string) to ids that decode without a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "modules/text/byte_level_bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const nurture::ByteLevelBpe bpe = nurture::ByteLevelBpe::from_json(text, "tokenizer.json");
    for (const std::string& s : {std::string("Hello, 세계! 12345 \t\n  <|im_start|>"), text.substr(0, 64)}) {
      try {
        const auto ids = bpe.encode(s, /*allow_special=*/true);
        for (int64_t id : ids)
          if (id < 0) std::abort();
        bpe.decode(ids, /*skip_special=*/false);
      } catch (const std::invalid_argument&) {  // text that is not UTF-8
      } catch (const std::runtime_error&) {
      }
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
