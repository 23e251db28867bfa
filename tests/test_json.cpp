// Tests of the strict JSON reader and the writer (support/json.h): every
// RFC 8259 form is read exactly (integers kept as int64, escapes and UTF-8),
// everything outside the grammar is rejected with the line and column, and
// written JSON reads back to the same value.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include "support/error.h"
#include "support/json.h"

using namespace cb;

namespace {

// The message of the cb::Error that parsing `text` throws ("" if none).
std::string parse_error(const std::string& text) {
  try {
    json_parse(text, "doc.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Json, Scalars) {
  EXPECT_TRUE(json_parse("null").is_null());
  EXPECT_EQ(json_parse("true").as_bool(), true);
  EXPECT_EQ(json_parse(" false\n").as_bool(), false);
  EXPECT_EQ(json_parse("0").as_int(), 0);
  EXPECT_EQ(json_parse("-0").as_int(), 0);
  EXPECT_EQ(json_parse("50257").as_int(), 50257);
  EXPECT_EQ(json_parse("-9223372036854775808").as_int(), INT64_MIN);
  EXPECT_EQ(json_parse("9223372036854775807").as_int(), INT64_MAX);
  EXPECT_TRUE(json_parse("12").is_integer());
  // Past int64: a real, still the right magnitude.
  const Json big = json_parse("9223372036854775808");
  EXPECT_EQ(big.type(), Json::Type::real);
  EXPECT_DOUBLE_EQ(big.as_double(), 9223372036854775808.0);
  EXPECT_THROW(big.as_int(), Error);
  EXPECT_DOUBLE_EQ(json_parse("1.5").as_double(), 1.5);
  EXPECT_DOUBLE_EQ(json_parse("-2.5e-3").as_double(), -0.0025);
  EXPECT_DOUBLE_EQ(json_parse("1E2").as_double(), 100.0);
  EXPECT_DOUBLE_EQ(json_parse("1e+2").as_double(), 100.0);
  EXPECT_DOUBLE_EQ(json_parse("0.02").as_double(), 0.02);
  EXPECT_EQ(json_parse("1e-400").as_double(), 0.0);  // underflow to zero is not an error
  // Integral reals convert to integers; fractional ones do not.
  EXPECT_EQ(json_parse("10000.0").as_int(), 10000);
  EXPECT_EQ(json_parse("1e3").as_int(), 1000);
  EXPECT_THROW(json_parse("1.5").as_int(), Error);
  EXPECT_DOUBLE_EQ(json_parse("7").as_double(), 7.0);
}

TEST(Json, Strings) {
  EXPECT_EQ(json_parse(R"("")").as_string(), "");
  EXPECT_EQ(json_parse(R"("gelu_new")").as_string(), "gelu_new");
  EXPECT_EQ(json_parse(R"("\"\\\/\b\f\n\r\t")").as_string(), "\"\\/\b\f\n\r\t");
  EXPECT_EQ(json_parse(R"("\u0041\u00e9\u20AC")").as_string(), "A\xc3\xa9\xe2\x82\xac");  // A é €
  EXPECT_EQ(json_parse(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");             // U+1F600
  EXPECT_EQ(json_parse(R"("\u0000")").as_string(), std::string(1, '\0'));
  EXPECT_EQ(json_parse("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"").as_string(), "caf\xc3\xa9 \xf0\x9f\x98\x80");  // raw UTF-8
}

TEST(Json, ArraysAndObjects) {
  const Json j = json_parse(R"( { "n_layer" : 2, "attention_types": [[["global", "local"], 1]],
                                  "nested": {"a": [], "b": {}}, "x": null } )");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 4u);
  EXPECT_EQ(j.at("n_layer").as_int(), 2);
  const Json& types = j.at("attention_types");
  ASSERT_EQ(types.size(), 1u);
  EXPECT_EQ(types.at(size_t(0)).at(size_t(0)).at(size_t(1)).as_string(), "local");
  EXPECT_EQ(types.at(size_t(0)).at(size_t(1)).as_int(), 1);
  EXPECT_TRUE(j.at("nested").at("a").is_array());
  EXPECT_EQ(j.at("nested").at("a").size(), 0u);
  EXPECT_TRUE(j.at("nested").at("b").is_object());
  EXPECT_TRUE(j.at("x").is_null());
  EXPECT_EQ(j.find("missing"), nullptr);
  EXPECT_EQ(json_parse("[1]").find("a"), nullptr);
  // 512 levels are fine.
  EXPECT_NO_THROW(json_parse(std::string(512, '[') + std::string(512, ']')));
}

TEST(Json, RejectsWhatIsNotJson) {
  const std::pair<const char*, const char*> bad[] = {
      {"", "end of input"},
      {"   ", "end of input"},
      {"[1,]", "expected a value"},
      {"{\"a\":1,}", "expected a string key"},
      {"[1 2]", "expected ',' or ']'"},
      {"{\"a\" 1}", "expected ':'"},
      {"{a:1}", "expected a string key"},
      {"01", "leading zero"},
      {"-01", "leading zero"},
      {"1.", "no digits after '.'"},
      {".5", "expected a value"},
      {"+1", "expected a value"},
      {"-", "invalid number"},
      {"1e", "no digits in the exponent"},
      {"1e400", "out of range"},
      {"-1e400", "out of range"},
      {"NaN", "expected a value"},
      {"Infinity", "expected a value"},
      {"-Infinity", "invalid number"},
      {"tru", "invalid literal"},
      {"nul", "invalid literal"},
      {"True", "expected a value"},
      {"'a'", "expected a value"},
      {"\"abc", "unterminated string"},
      {"\"a\tb\"", "control character"},
      {"\"a\nb\"", "control character"},
      {"\"\\x\"", "invalid escape"},
      {"\"\\u12\"", "\\u escape"},
      {"\"\\u12G4\"", "hex digit"},
      {"\"\\ud800\"", "unpaired high surrogate"},
      {"\"\\ud800\\u0041\"", "unpaired high surrogate"},
      {"\"\\udc00\"", "unpaired low surrogate"},
      {"\"\xff\"", "invalid UTF-8"},
      {"\"\xc0\xaf\"", "invalid UTF-8"},          // overlong '/'
      {"\"\xed\xa0\x80\"", "invalid UTF-8"},      // an encoded surrogate
      {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"},  // past U+10FFFF
      {"\"\xe2\x82\"", "invalid UTF-8"},          // truncated
      {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
      {"1 2", "after the JSON value"},
      {"{} x", "after the JSON value"},
      {"/* c */ 1", "expected a value"},
      {"[1] // c", "after the JSON value"},
  };
  for (const auto& [text, expected] : bad) {
    const std::string msg = parse_error(text);
    EXPECT_NE(msg.find(expected), std::string::npos) << "input: " << text << "\nmessage: " << msg;
    EXPECT_EQ(msg.rfind("doc.json:", 0), 0u) << "input: " << text << "\nmessage: " << msg;
  }
  EXPECT_NE(parse_error(std::string(513, '[') + std::string(513, ']')).find("nesting deeper than 512"),
            std::string::npos);
}

TEST(Json, ErrorsSayLineAndColumn) {
  EXPECT_NE(parse_error("{\n  \"n_layer\": tru\n}").find("doc.json:2:14: invalid literal"), std::string::npos)
      << parse_error("{\n  \"n_layer\": tru\n}");
  EXPECT_NE(parse_error("[1,\n2,\n]").find("doc.json:3:1:"), std::string::npos) << parse_error("[1,\n2,\n]");
  EXPECT_NE(parse_error("{\"a\": 1, \"a\": 2}").find("doc.json:1:10: duplicate key"), std::string::npos);
}

// Hostile input: nesting far past the cap is a clean error at the first level
// too deep, not a stack overflow (the reader recurses once per level).
TEST(Json, DeepNestingIsAnErrorNotACrash) {
  const int n = 100000;
  for (const std::string& text : {std::string(n, '['), std::string(n, '[') + std::string(n, ']')})
    EXPECT_NE(parse_error(text).find("doc.json:1:513: nesting deeper than 512 levels"), std::string::npos);
  std::string objects;
  for (int i = 0; i < n; ++i) objects += "{\"a\":";
  EXPECT_NE(parse_error(objects).find("doc.json:1:2561: nesting deeper than 512 levels"), std::string::npos)
      << parse_error(objects).substr(0, 200);
  std::string lines;  // one level per line: the line of the 513th
  for (int i = 0; i < n; ++i) lines += "[\n";
  EXPECT_NE(parse_error(lines).find("doc.json:513:1: nesting deeper than 512 levels"), std::string::npos);
}

TEST(Json, TypedAccessNamesTheTypes) {
  const Json s("x");
  try {
    s.as_int();
    FAIL() << "as_int on a string must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a string, expected an integer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Json(1).as_string(), Error);
  EXPECT_THROW(Json(true).as_double(), Error);
  EXPECT_THROW(Json().as_array(), Error);
  EXPECT_THROW(Json(Json::Array{}).as_object(), Error);
  try {
    json_parse("{\"a\": 1}").at("b");
    FAIL() << "a missing key must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no member 'b'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(json_parse("[1]").at(size_t(1)), Error);
}

TEST(Json, WritesCompactAndIndented) {
  Json j;
  j["b"] = Json::Array{Json(1), Json(2.5), Json("x\"y"), Json(nullptr), Json(false)};
  j["a"] = Json::Object{};
  j["c"] = Json(Json::Array{});
  EXPECT_EQ(j.dump(), R"({"a":{},"b":[1,2.5,"x\"y",null,false],"c":[]})");
  EXPECT_EQ(j.dump(2),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5,\n    \"x\\\"y\",\n    null,\n    false\n  ],\n"
            "  \"c\": []\n}");
  EXPECT_EQ(Json(std::string("\x01\n\t\\")).dump(), R"("\u0001\n\t\\")");
  EXPECT_EQ(Json(std::string("\xc3\xa9")).dump(), "\"\xc3\xa9\"");  // UTF-8 is written as is
}

TEST(Json, RealsRoundTripAndStayReal) {
  EXPECT_EQ(Json(10000.0).dump(), "10000.0");
  EXPECT_EQ(Json(0.1).dump(), "0.1");
  EXPECT_EQ(Json(-0.02).dump(), "-0.02");
  EXPECT_EQ(Json(1e-05).dump(), "1e-05");
  EXPECT_EQ(json_parse(Json(10000.0).dump()).type(), Json::Type::real);
  for (double d : {0.1, 1.0 / 3.0, 1e300, -2.5e-308, 123456789.125, 0.02, 6.02214076e23}) {
    const Json back = json_parse(Json(d).dump());
    EXPECT_EQ(back.as_double(), d) << Json(d).dump();
  }
  EXPECT_THROW(Json(std::numeric_limits<double>::infinity()).dump(), Error);
  EXPECT_THROW(Json(std::nan("")).dump(), Error);
}

TEST(Json, RoundTripsADocument) {
  const std::string text = R"({"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],
    "initializer_range":0.02,"layer_norm_epsilon":1e-05,"n_embd":64,"n_inner":null,"rope":{"theta":10000.0},
    "scale_attn_weights":true,"s":"tab\there \u00e9 \ud83d\ude00"})";
  const Json j = json_parse(text);
  EXPECT_EQ(json_parse(j.dump()), j);
  EXPECT_EQ(json_parse(j.dump(4)), j);
  EXPECT_EQ(json_parse(j.dump()).dump(), j.dump());
}

TEST(Json, EqualityComparesNumbersByValue) {
  EXPECT_EQ(Json(1), Json(1.0));
  EXPECT_NE(Json(1), Json(1.5));
  EXPECT_NE(Json(1), Json("1"));
  EXPECT_NE(Json(nullptr), Json(false));
  EXPECT_EQ(json_parse("[1, {\"a\": 2.0}]"), json_parse("[1.0, {\"a\": 2}]"));
  EXPECT_NE(json_parse("{\"a\": 1}"), json_parse("{\"b\": 1}"));
}

TEST(Json, HoldsEveryIntegerType) {
  EXPECT_EQ(Json(uint64_t(5)).as_int(), 5);
  EXPECT_EQ(Json(size_t(7)).dump(), "7");
  EXPECT_EQ(Json(int8_t(-3)).as_int(), -3);
  EXPECT_EQ(Json(uint32_t(4000000000u)).as_int(), 4000000000);
  EXPECT_EQ(Json(static_cast<long long>(INT64_MIN)).as_int(), INT64_MIN);
  EXPECT_EQ(Json(uint64_t(INT64_MAX)).as_int(), INT64_MAX);
  EXPECT_THROW(Json(uint64_t(INT64_MAX) + 1), Error);
  EXPECT_TRUE(Json(true).is_bool());
  EXPECT_TRUE(Json(2.5f).type() == Json::Type::real);
}

TEST(Json, MutatesObjects) {
  Json j;  // null becomes an object on first member access
  j["x"]["y"] = 3;
  EXPECT_EQ(j.at("x").at("y").as_int(), 3);
  j["x"]["y"] = "s";
  EXPECT_EQ(j.at("x").at("y").as_string(), "s");
  Json a = Json::Array{};
  a.as_array().emplace_back(1);
  EXPECT_EQ(a.size(), 1u);
  Json n(5);
  EXPECT_THROW(n["k"], Error);  // not an object
}

TEST(Json, FilesRoundTripAndErrorsNameThePath) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("codebook_json_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "c.json").string();
  Json j;
  j["model_type"] = "gpt2";
  j["n_layer"] = 2;
  json_write_file(path, j);
  EXPECT_EQ(json_read_file(path), j);
  try {
    json_read_file((dir / "missing.json").string());
    FAIL() << "reading a missing file must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
