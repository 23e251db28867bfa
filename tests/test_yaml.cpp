// The YAML subset of training configs (support/yaml.h): the shapes the
// original's Hydra configs use, overrides, and errors that name the line.
#include <gtest/gtest.h>

#include "support/error.h"
#include "support/yaml.h"

using namespace cb;

namespace {

TEST(Yaml, ConfigLikeTheOriginals) {
  Json c = parse_yaml(R"(# codebook training, main.yaml style
defaults:
  - _self_
model_name_or_path: EleutherAI/pythia-70m-deduped
training_args:
  per_device_train_batch_size: 24
  learning_rate: 5e-4      # a float in exponent form
  lr_scheduler_type: constant
  max_steps: 15000
  tf32: True
  output_dir: "out dir/#1"
codebook_args:
  codebook_at: [attn_preproj, mlp]
  num_codebooks: [-1, 1]
  layers_to_snap: all
  kmeans_kwargs: {n_init: auto, batch_size: 24576}
  codebook_kwargs: null
  replace_rho: .5
  tags:
  - a
  - 'it''s'
  pairs:
    - name: x
      value: 1
    - name: y
      value: ~
empty:
)");
  EXPECT_EQ(c.at("defaults").at(size_t(0)).as_string(), "_self_");
  EXPECT_EQ(c.at("model_name_or_path").as_string(), "EleutherAI/pythia-70m-deduped");
  const Json& t = c.at("training_args");
  EXPECT_EQ(t.at("per_device_train_batch_size").as_int(), 24);
  EXPECT_DOUBLE_EQ(t.at("learning_rate").as_double(), 5e-4);
  EXPECT_TRUE(t.at("tf32").as_bool());
  EXPECT_EQ(t.at("output_dir").as_string(), "out dir/#1");
  const Json& cb = c.at("codebook_args");
  EXPECT_EQ(cb.at("codebook_at").at(size_t(1)).as_string(), "mlp");
  EXPECT_EQ(cb.at("num_codebooks").at(size_t(0)).as_int(), -1);
  EXPECT_EQ(cb.at("kmeans_kwargs").at("batch_size").as_int(), 24576);
  EXPECT_EQ(cb.at("kmeans_kwargs").at("n_init").as_string(), "auto");
  EXPECT_TRUE(cb.at("codebook_kwargs").is_null());
  EXPECT_DOUBLE_EQ(cb.at("replace_rho").as_double(), 0.5);
  EXPECT_EQ(cb.at("tags").at(size_t(1)).as_string(), "it's");
  EXPECT_EQ(cb.at("pairs").at(size_t(0)).at("value").as_int(), 1);
  EXPECT_TRUE(cb.at("pairs").at(size_t(1)).at("value").is_null());
  EXPECT_TRUE(c.at("empty").is_null());
}

TEST(Yaml, Overrides) {
  Json c = parse_yaml("training:\n  lr: 0.1\n  steps: 10\n");
  apply_override(c, "training.lr=1e-3");
  apply_override(c, "codebook_at=[mlp, attn]");
  apply_override(c, "new.nested.key=hello");
  apply_override(c, "flag=false");
  EXPECT_DOUBLE_EQ(c.at("training").at("lr").as_double(), 1e-3);
  EXPECT_EQ(c.at("training").at("steps").as_int(), 10);
  EXPECT_EQ(c.at("codebook_at").size(), 2u);
  EXPECT_EQ(c.at("new").at("nested").at("key").as_string(), "hello");
  EXPECT_FALSE(c.at("flag").as_bool());
  EXPECT_THROW(apply_override(c, "novalue"), Error);
  EXPECT_THROW(apply_override(c, "training.lr.x=1"), Error);
  EXPECT_THROW(apply_override(c, "a..b=1"), Error);
}

TEST(Yaml, ErrorsNameTheLine) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      parse_yaml(text, "cfg.yaml");
      ADD_FAILURE() << "no error for: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("a: 1\n\tb: 2\n", "cfg.yaml:2");
  expect_error("a: 1\na: 2\n", "duplicate key 'a'");
  expect_error("a: [1, 2\n", "cfg.yaml:1");
  expect_error("a: 1\n  b: 2\n", "unexpected indentation");
  expect_error("just a scalar line\nb: 1\n", "expected 'key: value'");
  expect_error("a: &anchor 1\n", "anchors");
  expect_error("a: \"open\n", "unterminated");
  expect_error("a: .inf\n", "infinite");
}

// Hostile input: nesting past 512 levels (block and flow together) is an
// error naming the line and column of the first level too deep, not a stack
// overflow (the parser recurses once per level; 100,000 levels crashed it).
std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// The first 200 characters of the cb::Error `f` throws; "" when it throws none.
template <typename F>
std::string error_message(F f) {
  try {
    f();
  } catch (const Error& e) {
    return std::string(e.what()).substr(0, 200);
  }
  return "";
}

TEST(Yaml, DeepNestingIsAnErrorNotACrash) {
  auto error_of = [](const std::string& text) { return error_message([&] { parse_yaml(text, "cfg.yaml"); }); };
  const int n = 100000;
  // The mapping is level 1, so the 512th '[' (column 3 + 512) is level 513.
  EXPECT_NE(error_of("a: " + repeat("[", n) + repeat("]", n) + "\n").find("cfg.yaml:1:515: nesting deeper than 512"),
            std::string::npos)
      << error_of("a: " + repeat("[", n) + repeat("]", n) + "\n");
  EXPECT_NE(error_of("a: " + repeat("{a: ", n) + "1" + repeat("}", n) + "\n").find("cfg.yaml:1:2048: nesting deeper"),
            std::string::npos);
  // "- - - x": one block sequence per "- ", the 513th at column 1025.
  EXPECT_NE(error_of(repeat("- ", n) + "x\n").find("cfg.yaml:1:1025: nesting deeper than 512"), std::string::npos)
      << error_of(repeat("- ", n) + "x\n");
  std::string mappings;  // one more level per line
  for (int i = 0; i < 600; ++i) mappings += std::string(size_t(i), ' ') + "a:\n";
  EXPECT_NE(error_of(mappings).find("cfg.yaml:513:513: nesting deeper than 512"), std::string::npos)
      << error_of(mappings);
  // 512 levels are fine.
  const Json ok = parse_yaml("a: " + repeat("[", 511) + "1" + repeat("]", 511) + "\n");
  const Json* v = &ok.at("a");
  for (int i = 0; i < 511; ++i) v = &v->at(size_t(0));
  EXPECT_EQ(v->as_int(), 1);
  EXPECT_NO_THROW(parse_yaml(repeat("- ", 512) + "x\n"));
  try {
    Json c;
    apply_override(c, "x=" + repeat("[", n));
    ADD_FAILURE() << "no error for a deep override";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(":1:515: nesting deeper than 512"), std::string::npos);
  }
}

}  // namespace

// An override nests in two ways, both capped like a file: its value (flow
// '[' and '{') and its key path (each '.' one more mapping).
TEST(Yaml, DeepOverridesAreAnErrorNotACrash) {
  auto override_error = [](const std::string& assignment) {
    return error_message([&] {
      Json c;
      apply_override(c, assignment);
    });
  };
  const int n = 100000;
  EXPECT_NE(override_error("x=" + repeat("{a: ", n) + "1" + repeat("}", n)).find("nesting deeper than 512"),
            std::string::npos);
  EXPECT_NE(override_error("x=" + repeat("[", n) + repeat("]", n)).find("nesting deeper than 512"), std::string::npos);
  std::string deep_key = repeat("a.", n) + "b=1";
  EXPECT_NE(override_error(deep_key).find("key path deeper than 512 levels"), std::string::npos)
      << override_error(deep_key);
  // 512 keys are fine, and make 512 levels.
  Json c;
  apply_override(c, repeat("a.", 511) + "b=1");
  const Json* v = &c;
  for (int i = 0; i < 511; ++i) v = &v->at("a");
  EXPECT_EQ(v->at("b").as_int(), 1);
}

// Found by fuzzing (tests/fuzz/fuzz_yaml.cpp): numbers out of double range
// escaped as std::out_of_range from std::stod instead of a cb::Error, and a
// long scalar overflowed the stack in std::regex (which recursed per character).
TEST(Yaml, NumbersOutOfRangeAndLongScalars) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      parse_yaml(text, "cfg.yaml");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("a: 1e999\n").find("cfg.yaml:1: number out of range: 1e999"), std::string::npos)
      << error_of("a: 1e999\n");
  EXPECT_NE(error_of("a: -1.5E+400\n").find("number out of range"), std::string::npos);
  EXPECT_NE(error_of("a: 99999999999999999999\n").find("integer out of range"), std::string::npos);
  // Underflow reads as zero (or a subnormal), as in the JSON reader.
  EXPECT_EQ(parse_yaml("a: 1e-400\n").at("a").as_double(), 0.0);
  EXPECT_GT(parse_yaml("a: 4e-320\n").at("a").as_double(), 0.0);
  Json c;
  apply_override(c, "lr=1e-999");
  EXPECT_EQ(c.at("lr").as_double(), 0.0);
  // The forms the integer and real patterns accept, unchanged.
  Json v = parse_yaml("a: [+7, -0, 5., .5, +1.5e+3, 2E-2, 1e, .e1, +, 1.2.3]\n");
  EXPECT_EQ(v.at("a").at(size_t(0)).as_int(), 7);
  EXPECT_TRUE(v.at("a").at(size_t(1)).is_integer());
  EXPECT_EQ(v.at("a").at(size_t(2)).as_double(), 5.0);
  EXPECT_EQ(v.at("a").at(size_t(3)).as_double(), 0.5);
  EXPECT_EQ(v.at("a").at(size_t(4)).as_double(), 1500.0);
  EXPECT_EQ(v.at("a").at(size_t(5)).as_double(), 0.02);
  for (size_t i = 6; i < 10; ++i) EXPECT_TRUE(v.at("a").at(i).is_string()) << i;
  // 200,000 digits: an integer out of range, a real, a string; never a stack overflow.
  const std::string digits(200000, '1');
  EXPECT_NE(error_of("a: " + digits + "\n").find("integer out of range"), std::string::npos);
  EXPECT_NEAR(parse_yaml("a: 0." + digits + "\n").at("a").as_double(), 0.111111, 1e-6);
  EXPECT_EQ(parse_yaml("a: x" + digits + "\n").at("a").as_string().size(), digits.size() + 1);
}
