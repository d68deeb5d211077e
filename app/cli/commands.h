#pragma once
// The moe-inspect subcommands, one file per family of commands.
#include "app/cli/cli_common.h"
#include "app/cli/table_output.h"
#include "inspect/trace_compare.h"

namespace moe::cli {

int run_generate(const Args& args, bool trace_command);     // cmd_generate.cpp: generate, trace
int run_eval(const Args& args, bool budget_sweep);          // cmd_eval.cpp: eval, budget-sweep
int run_compare_modes(const Args& args);                    // cmd_eval.cpp
int run_stats(const Args& args);                            // cmd_trace_tools.cpp
int run_compare(const Args& args);                          // cmd_trace_tools.cpp
int run_cache_sim(const Args& args);                        // cmd_trace_tools.cpp
int run_corpus(const Args& args);                           // cmd_corpus.cpp

// The tables of a trace comparison, named for --csv (compare and compare-modes).
std::vector<NamedTable> comparison_named_tables(const inspect::TraceComparison& comparison);

// Text safe for a terminal: control characters other than newline and tab shown as \xNN.
std::string terminal_safe(const std::string& text);

}  // namespace moe::cli
