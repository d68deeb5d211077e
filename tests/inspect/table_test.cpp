// Table writers: RFC 4180 quoting, JSON types (NaN and infinities as null, integers exact), precision
// as shown or round trip, and the aligned text a terminal gets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "inspect/table.h"

namespace moe::inspect {
namespace {

Table small_table() {
  Table t;
  t.title = "Small";
  t.columns = {"name", "count", "value"};
  t.add_row({"plain", 3, 0.5});
  t.add_row({"a,\"b\"", int64_t(-12), Cell(0.123456789, 3)});
  t.notes = {"a note"};
  return t;
}

TEST(Table, CellsKeepTheirKinds) {
  EXPECT_EQ(Cell("x").kind, Cell::Kind::Text);
  EXPECT_EQ(Cell(std::string("x")).kind, Cell::Kind::Text);
  EXPECT_EQ(Cell(7).kind, Cell::Kind::Integer);
  EXPECT_EQ(Cell(uint64_t(7)).kind, Cell::Kind::Integer);
  EXPECT_EQ(Cell(7.0).kind, Cell::Kind::Real);
  EXPECT_EQ(Cell(0.5f).kind, Cell::Kind::Real);
  EXPECT_TRUE(Cell().empty());
  EXPECT_TRUE(Cell::optional(std::nullopt).empty());
  EXPECT_EQ(Cell::optional(2.5).real, 2.5);
  EXPECT_FALSE(Cell("3").number().has_value());
  EXPECT_EQ(*Cell(3).number(), 3.0);
}

TEST(Table, Formatting) {
  EXPECT_EQ(Cell(0.5).formatted(), "0.5000");
  EXPECT_EQ(Cell(2.0 / 3.0, 2).formatted(), "0.67");
  EXPECT_EQ(Cell(1234.4, 0).formatted(), "1234");
  EXPECT_EQ(Cell(-0.00001).formatted(), "0.0000");  // no "-0.0000"
  EXPECT_EQ(Cell(-0.5, 1).formatted(), "-0.5");
  EXPECT_EQ(Cell(std::nan("")).formatted(), "nan");
  EXPECT_EQ(Cell(-std::numeric_limits<double>::infinity()).formatted(), "-inf");
  EXPECT_EQ(Cell(int64_t(9007199254740993)).formatted(), "9007199254740993");  // 2^53 + 1, exact
}

TEST(Table, RowsMustMatchTheColumns) {
  Table t;
  t.columns = {"a", "b"};
  EXPECT_THROW(t.add_row({1}), std::invalid_argument);
  EXPECT_THROW(t.add_row({1, 2, 3}), std::invalid_argument);
  t.add_row({1, 2});
  EXPECT_EQ(t.at(0, "b").integer, 2);
  EXPECT_THROW(t.at(0, "c"), std::out_of_range);
  EXPECT_THROW(t.at(1, "a"), std::out_of_range);
}

TEST(Table, CsvQuotesCommasQuotesAndNewlines) {
  const Table t = small_table();
  // The comma-and-quote cell is quoted with its quotes doubled; lines end in CRLF; no title or notes.
  EXPECT_EQ(to_csv(t),
            "name,count,value\r\n"
            "plain,3,0.5000\r\n"
            "\"a,\"\"b\"\"\",-12,0.123\r\n");
  Table lines;
  lines.columns = {"text, with comma", "n"};
  lines.add_row({"two\nlines", Cell()});
  lines.add_row({"cr\rhere", std::nan("")});
  EXPECT_EQ(to_csv(lines),
            "\"text, with comma\",n\r\n"
            "\"two\nlines\",\r\n"
            "\"cr\rhere\",nan\r\n");
}

TEST(Table, CsvRoundTripDigits) {
  const Table t = small_table();
  EXPECT_EQ(to_csv(t, Digits::RoundTrip),
            "name,count,value\r\n"
            "plain,3,0.5\r\n"
            "\"a,\"\"b\"\"\",-12,0.123456789\r\n");
}

TEST(Table, JsonIsAnArrayOfObjectsWithTypedValues) {
  Table t;
  t.columns = {"layer", "name", "cv", "missing", "big"};
  t.add_row({3, "x\"y", Cell(0.123456, 2), std::nan(""), int64_t(9007199254740993)});
  t.add_row({4, Cell(), std::numeric_limits<double>::infinity(), Cell(), 0});
  const std::string text = to_json(t);
  EXPECT_EQ(text,
            "[{\"layer\":3,\"name\":\"x\\\"y\",\"cv\":0.12,\"missing\":null,\"big\":9007199254740993},"
            "{\"layer\":4,\"name\":null,\"cv\":null,\"missing\":null,\"big\":0}]");
  const nlohmann::json parsed = nlohmann::json::parse(text);
  ASSERT_TRUE(parsed.is_array());
  EXPECT_TRUE(parsed[0]["layer"].is_number_integer());
  EXPECT_TRUE(parsed[0]["cv"].is_number_float());
  EXPECT_TRUE(parsed[0]["missing"].is_null());  // NaN
  EXPECT_TRUE(parsed[1]["cv"].is_null());       // inf
  EXPECT_EQ(parsed[0]["big"].get<int64_t>(), 9007199254740993);
  // Round trip keeps every digit.
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(to_json(t, Digits::RoundTrip))[0]["cv"].get<double>(), 0.123456);
}

TEST(Table, JsonKeepsColumnsThatShareAName) {
  Table t;
  t.columns = {"x", "x", "x_2"};
  t.add_row({1, 2, 3});
  EXPECT_EQ(to_json(t), "[{\"x\":1,\"x_2\":2,\"x_2_2\":3}]");
}

TEST(Table, JsonDocumentCarriesTitleAndNotes) {
  const nlohmann::json doc = nlohmann::json::parse(to_json_document(small_table()));
  EXPECT_EQ(doc["title"], "Small");
  EXPECT_EQ(doc["columns"], nlohmann::json({"name", "count", "value"}));
  EXPECT_EQ(doc["notes"], nlohmann::json({"a note"}));
  EXPECT_EQ(doc["rows"][1]["value"].get<double>(), 0.123);
}

TEST(Table, TextAlignsNumbersRightAndTextLeft) {
  Table t;
  t.title = "Load";
  t.columns = {"phase", "tokens", "share"};
  t.add_row({"user", 3, 0.5});
  t.add_row({"thinking", 120, Cell()});
  t.add_row({"ünï", 7, Cell(0.25, 2)});  // widths in code points, not bytes
  t.notes = {"shares of all tokens"};
  EXPECT_EQ(to_text(t),
            "Load\n"
            "phase     tokens   share\n"
            "--------  ------  ------\n"
            "user           3  0.5000\n"
            "thinking     120       -\n"
            "ünï            7    0.25\n"
            "note: shares of all tokens\n");
}

}  // namespace
}  // namespace moe::inspect
