// A dataset format turns one JSONL record into a conversation: a recipe's `format` names one.
// The built-in ones ("chat", "alpaca"; their parsers are in jsonl.h) are registered on first use;
// plugins add their own.
#pragma once
#include <string>

#include "modules/core/registry.h"
#include "pipelines/data/jsonl.h"

namespace nurture {

struct DatasetEntry {
  std::string help;
  ChatFormat to_messages;
};

Registry<DatasetEntry>& dataset_format_registry();

}  // namespace nurture
