#include "app/cli/table_output.h"

#include <fstream>
#include <iostream>

#include "engine/common/error.h"

namespace moe::cli {

void print_tables(const Args& args, const std::vector<NamedTable>& tables) {
  if (auto prefix = args.get("csv")) {
    for (const NamedTable& t : tables) {
      std::string path = *prefix;
      if (path.size() > 4 && path.substr(path.size() - 4) == ".csv") path.resize(path.size() - 4);
      path += tables.size() == 1 ? ".csv" : "_" + t.name + ".csv";
      std::ofstream out(path, std::ios::binary);
      out << inspect::to_csv(t.table);
      if (!out) throw EngineError(path, "--csv", "cannot write the file");
      std::cerr << "[wrote " << path << "]\n";
    }
  }
  for (const NamedTable& t : tables) {
    if (args.flag("json")) std::cout << inspect::to_json_document(t.table) << "\n";
    else std::cout << inspect::to_text(t.table) << "\n";
  }
}

}  // namespace moe::cli
