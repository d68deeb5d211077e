#pragma once
// Table: the one shape every measure takes on its way out. The CLI prints it (to_text), the GUI and
// the CLI export it (to_csv, to_json), and tests read single cells back (at). Keeping the measures'
// output as data rather than as printf calls is what lets the CLI, the GUI and Python see the same
// numbers.
//
// A cell is empty, text, an exact integer, or a real number with the number of digits after the point
// to show. Integers are never rounded. Reals are shown with their precision everywhere by default
// (what the terminal prints is what the file holds); Digits::RoundTrip writes every bit instead, for
// readers who compute further from the export.
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe::inspect {

struct Cell {
  enum class Kind : uint8_t { Empty, Text, Integer, Real };
  static constexpr int kDefaultPrecision = 4;

  Kind kind = Kind::Empty;
  std::string text;
  int64_t integer = 0;
  double real = 0;
  int precision = kDefaultPrecision;  // digits after the decimal point, clamped to [0, 17]

  Cell() = default;
  Cell(std::string value) : kind(Kind::Text), text(std::move(value)) {}
  Cell(std::string_view value) : kind(Kind::Text), text(value) {}
  Cell(const char* value) : kind(Kind::Text), text(value) {}
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  Cell(T value) : kind(Kind::Integer), integer(static_cast<int64_t>(value)) {}
  Cell(double value, int digits = kDefaultPrecision) : kind(Kind::Real), real(value), precision(digits) {}
  Cell(bool) = delete;  // say "yes"/"no" or 1/0 on purpose

  // An unset optional is an empty cell (a measure that does not exist for this row).
  static Cell optional(const std::optional<double>& value, int digits = kDefaultPrecision) {
    return value ? Cell(*value, digits) : Cell();
  }

  bool empty() const { return kind == Kind::Empty; }
  // The numeric value of an Integer or Real cell; unset for Empty and Text.
  std::optional<double> number() const;
  // As to_text shows it: reals with `precision` digits (nan, inf, -inf spelt so), integers exactly,
  // empty as "".
  std::string formatted() const;
};

struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
  std::vector<std::string> notes;  // caveats the reader needs (shown under the text table, kept in JSON documents)

  // Appends a row; throws std::invalid_argument when it does not have one cell per column.
  void add_row(std::vector<Cell> row);
  // Index of the column with this name; unset when there is none.
  std::optional<size_t> column_index(std::string_view name) const;
  // The cell in row `row` under column `column`; throws std::out_of_range when either does not exist.
  const Cell& at(size_t row, std::string_view column) const;
};

enum class Digits {
  AsShown,    // reals rounded to their cell's precision, as in to_text
  RoundTrip,  // reals with the shortest text that reads back to the same double
};

// RFC 4180: a header line with the column names, then one line per row, lines ended by CRLF; a field
// that holds a comma, a double quote, CR or LF is enclosed in double quotes and its quotes doubled.
// Empty cells are empty fields; NaN and infinities are written nan, inf, -inf (pandas and NumPy read
// them back). The title and notes have no place in CSV and are left out.
std::string to_csv(const Table& table, Digits digits = Digits::AsShown);

// An array with one object per row, keyed by column name (in column order); integers and reals are
// JSON numbers, text cells strings, empty cells null, and NaN and infinities null (JSON has no word
// for them). Should two columns share a name, the later ones get "_2", "_3" ... so no value is lost.
// indent < 0: one line; otherwise pretty-printed with that many spaces.
std::string to_json(const Table& table, Digits digits = Digits::AsShown, int indent = -1);

// The same rows wrapped with what to_json leaves out: {"title", "columns", "notes", "rows"}.
std::string to_json_document(const Table& table, Digits digits = Digits::AsShown, int indent = -1);

// For a terminal: the title, the column names, a rule, the rows with numbers right-aligned and text
// left-aligned (widths counted in code points), then the notes. Empty cells are shown as "-".
std::string to_text(const Table& table);

}  // namespace moe::inspect
