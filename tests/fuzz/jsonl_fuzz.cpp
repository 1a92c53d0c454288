// libFuzzer target: the JSONL readers. Any bytes as a data file must give records or a
// `file:line: what` error (std::runtime_error), never a crash, with and without skip_bad_lines.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "pipelines/data/jsonl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("nurture-jsonl-fuzz-" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  for (bool skip : {false, true}) {
    try {
      nurture::load_preferences(file, skip);
    } catch (const std::runtime_error&) {
    }
    try {
      nurture::load_prompts(file, skip);
    } catch (const std::runtime_error&) {
    }
    try {
      nurture::load_icl_tasks(file, skip);
    } catch (const std::runtime_error&) {
    }
    try {
      nurture::for_each_jsonl(file, skip, [](const nlohmann::json& record, const std::string&) {
        nurture::chat_record_to_messages(record);
      });
    } catch (const std::runtime_error&) {
    }
    try {
      nurture::for_each_jsonl(file, skip, [](const nlohmann::json& record, const std::string&) {
        nurture::alpaca_record_to_messages(record);
      });
    } catch (const std::runtime_error&) {
    }
  }
  return 0;
}
