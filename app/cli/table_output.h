#pragma once
// How every moe-inspect command prints its tables: text on stdout, or one JSON document per table with
// --json, and --csv PREFIX writes PREFIX_<name>.csv per table (PREFIX.csv when there is one table).
#include <string>
#include <vector>

#include "app/cli/cli_common.h"
#include "inspect/table.h"

namespace moe::cli {

struct NamedTable {
  std::string name;  // file-name part, e.g. "routing"
  inspect::Table table;
};

void print_tables(const Args& args, const std::vector<NamedTable>& tables);

}  // namespace moe::cli
