// A dataset format (registries().datasets) turns one JSONL record into a conversation; the
// built-in ones are in jsonl.h. Its own header so that the registry need not include the data
// layer that looks formats up in it.
#pragma once
#include <string>

#include "pipelines/jsonl.h"

namespace nurture {

struct DatasetEntry {
  std::string help;
  ChatFormat to_messages;
};

}  // namespace nurture
