// The built-in dataset formats.
#include "pipelines/data/dataset_format.h"

namespace nurture {

Registry<DatasetEntry>& dataset_format_registry() {
  static Registry<DatasetEntry> registry = [] {
    Registry<DatasetEntry> r("dataset format");
    r.add("chat", {"{messages: [{role, content}, ...]} or {prompt, response[, system]}", chat_record_to_messages});
    r.add("alpaca", {"{instruction, input, output} (Stanford Alpaca)", alpaca_record_to_messages});
    return r;
  }();
  return registry;
}

}  // namespace nurture
