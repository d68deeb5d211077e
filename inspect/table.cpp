#include "inspect/table.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <unordered_set>

#include <nlohmann/json.hpp>

namespace moe::inspect {
namespace {

int clamped_precision(int precision) { return std::clamp(precision, 0, 17); }

std::string non_finite_text(double v) {
  if (std::isnan(v)) return "nan";
  return v > 0 ? "inf" : "-inf";
}

// Fixed notation with `precision` digits. A value that rounds to zero loses its sign: "-0.0000" says
// nothing a reader can use, and it breaks the column's alignment by a character.
std::string fixed_text(double v, int precision) {
  if (!std::isfinite(v)) return non_finite_text(v);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", clamped_precision(precision), v);
  std::string s(buf);
  if (s.front() == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

// Shortest text that reads back to the same double (std::to_chars guarantees the round trip).
std::string round_trip_text(double v) {
  if (!std::isfinite(v)) return non_finite_text(v);
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, result.ptr);
}

std::string csv_field(const Cell& cell, Digits digits) {
  std::string s;
  switch (cell.kind) {
    case Cell::Kind::Empty: return s;
    case Cell::Kind::Integer: return std::to_string(cell.integer);
    case Cell::Kind::Real: return digits == Digits::AsShown ? fixed_text(cell.real, cell.precision) : round_trip_text(cell.real);
    case Cell::Kind::Text: s = cell.text; break;
  }
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) line += ',';
    line += fields[i];
  }
  line += "\r\n";
  return line;
}

nlohmann::ordered_json json_value(const Cell& cell, Digits digits) {
  switch (cell.kind) {
    case Cell::Kind::Empty: return nullptr;
    case Cell::Kind::Text: return cell.text;
    case Cell::Kind::Integer: return cell.integer;
    case Cell::Kind::Real: {
      if (!std::isfinite(cell.real)) return nullptr;
      if (digits == Digits::RoundTrip) return cell.real;
      // The shown text read back: nlohmann writes the shortest round trip of that, i.e. the shown digits.
      return std::strtod(fixed_text(cell.real, cell.precision).c_str(), nullptr);
    }
  }
  return nullptr;
}

// Column names made unique so that no value of a row is overwritten in its JSON object.
std::vector<std::string> unique_keys(const std::vector<std::string>& columns) {
  std::vector<std::string> keys;
  std::unordered_set<std::string> used;
  for (const std::string& name : columns) {
    std::string key = name;
    for (int n = 2; used.count(key); ++n) key = name + "_" + std::to_string(n);
    used.insert(key);
    keys.push_back(key);
  }
  return keys;
}

nlohmann::ordered_json json_rows(const Table& table, Digits digits) {
  const std::vector<std::string> keys = unique_keys(table.columns);
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& row : table.rows) {
    nlohmann::ordered_json object = nlohmann::ordered_json::object();
    for (size_t c = 0; c < keys.size(); ++c) object[keys[c]] = c < row.size() ? json_value(row[c], digits) : nullptr;
    rows.push_back(std::move(object));
  }
  return rows;
}

size_t code_points(std::string_view s) {
  return size_t(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace

std::optional<double> Cell::number() const {
  if (kind == Kind::Integer) return double(integer);
  if (kind == Kind::Real) return real;
  return std::nullopt;
}

std::string Cell::formatted() const {
  switch (kind) {
    case Kind::Empty: return "";
    case Kind::Text: return text;
    case Kind::Integer: return std::to_string(integer);
    case Kind::Real: return fixed_text(real, precision);
  }
  return "";
}

void Table::add_row(std::vector<Cell> row) {
  if (row.size() != columns.size())
    throw std::invalid_argument("table \"" + title + "\": a row of " + std::to_string(row.size()) + " cells for " +
                                std::to_string(columns.size()) + " columns");
  rows.push_back(std::move(row));
}

std::optional<size_t> Table::column_index(std::string_view name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return i;
  return std::nullopt;
}

const Cell& Table::at(size_t row, std::string_view column) const {
  const std::optional<size_t> c = column_index(column);
  if (!c) throw std::out_of_range("table \"" + title + "\" has no column \"" + std::string(column) + "\"");
  if (row >= rows.size())
    throw std::out_of_range("table \"" + title + "\" has " + std::to_string(rows.size()) + " rows, asked for row " +
                            std::to_string(row));
  return rows[row].at(*c);
}

std::string to_csv(const Table& table, Digits digits) {
  std::vector<std::string> fields;
  for (const std::string& name : table.columns) fields.push_back(csv_field(Cell(name), digits));
  std::string out = csv_line(fields);
  for (const auto& row : table.rows) {
    fields.clear();
    for (const Cell& cell : row) fields.push_back(csv_field(cell, digits));
    out += csv_line(fields);
  }
  return out;
}

std::string to_json(const Table& table, Digits digits, int indent) {
  return json_rows(table, digits).dump(indent < 0 ? -1 : indent);
}

std::string to_json_document(const Table& table, Digits digits, int indent) {
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  doc["title"] = table.title;
  doc["columns"] = table.columns;
  doc["notes"] = table.notes;
  doc["rows"] = json_rows(table, digits);
  return doc.dump(indent < 0 ? -1 : indent);
}

std::string to_text(const Table& table) {
  const size_t n = table.columns.size();
  std::vector<std::vector<std::string>> shown;
  std::vector<size_t> width(n, 0);
  for (size_t c = 0; c < n; ++c) width[c] = code_points(table.columns[c]);
  for (const auto& row : table.rows) {
    std::vector<std::string> cells;
    for (size_t c = 0; c < n; ++c) {
      const std::string text = c < row.size() && !row[c].empty() ? row[c].formatted() : "-";
      width[c] = std::max(width[c], code_points(text));
      cells.push_back(text);
    }
    shown.push_back(std::move(cells));
  }
  auto pad = [](const std::string& s, size_t w, bool right) {
    const std::string fill(w - std::min(w, code_points(s)), ' ');
    return right ? fill + s : s + fill;
  };
  // A column whose filled cells are all numbers is right-aligned, header included.
  std::vector<bool> numeric(n, false);
  for (size_t c = 0; c < n; ++c) {
    bool any = false, all = true;
    for (const auto& row : table.rows) {
      if (c >= row.size() || row[c].empty()) continue;
      any = true;
      all = all && row[c].number().has_value();
    }
    numeric[c] = any && all;
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < n; ++c) {
      if (c) s += "  ";
      s += pad(cells[c], width[c], numeric[c]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string out;
  if (!table.title.empty()) out += table.title + "\n";
  out += line(table.columns);
  std::vector<std::string> rule;
  for (size_t c = 0; c < n; ++c) rule.push_back(std::string(width[c], '-'));
  out += line(rule);
  for (const auto& cells : shown) out += line(cells);
  for (const std::string& note : table.notes) out += "note: " + note + "\n";
  return out;
}

}  // namespace moe::inspect
