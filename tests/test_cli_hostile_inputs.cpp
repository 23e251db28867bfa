// Hostile files given to the `codebook` command line (docs/reliability.md,
// "Hostile input files"): each once crashed (exit 139), hung, read until
// memory ran out, or was accepted with exit 0. Now each must end in exit code
// 2 with a message naming what is wrong, quickly, and no signal. Commands run
// under `timeout` so that a regression to hanging fails instead of hanging.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "frontend/npy.h"
#include "frontend/onnx_export.h"
#include "ir/builder.h"
#include "ir/graph.h"
#include "support/json.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;
using cb::test::Result;

namespace {

const std::string kModel = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";
const std::string kHfGpt2 = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/hf";

// Runs the tool under a 60 s timeout (exit 124 if it hangs).
Result run_bounded(const std::string& args) {
  return cb::test::run_command("timeout 60 " + std::string(CB_CODEBOOK_BIN) + " " + args);
}

// Exit code 2 (a clear error: not a signal, not a timeout) with `text` in the output.
void expect_clear_error(const std::string& args, const std::string& text) {
  const Result r = run_bounded(args);
  EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
  EXPECT_NE(r.out.find(text), std::string::npos) << "expected '" << text << "' for: " << args << "\n" << r.out;
}

void write_bytes(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// y = Transpose(x), x f32 [a, b]: the op that read a wrapped .npy out of bounds.
void write_transpose_model(const fs::path& p) {
  cb::Graph g;
  g.opsets[""] = 17;
  cb::Value* x = g.add_input("x", cb::TensorType{cb::DType::f32, cb::Shape({cb::Dim::sym("a"), cb::Dim::sym("b")})});
  cb::Builder b(g);
  g.outputs.push_back(b.transpose(x, {1, 0}));
  cb::export_onnx(g, p.string());
}

}  // namespace

TEST(CliHostileInputs, NpyShapeThatWrapsIsAnErrorNotACrash) {
  const fs::path d = cb::test::temp_dir("hostile_npy");
  write_transpose_model(d / "transpose.onnx");
  // Shape (2^32, 2^32): its element count wraps to 0, so no data "is needed".
  const int64_t big = int64_t(1) << 32;
  write_bytes(d / "wrap.npy", cb::npy_header(cb::DType::f32, {big, big}) + std::string(64, '\0'));
  expect_clear_error("run " + (d / "transpose.onnx").string() + " --input x=" + (d / "wrap.npy").string(),
                     "wrap.npy: .npy shape: shape [4294967296,4294967296] has more than 2^62 elements");
  // The same file as the token ids of a language model (read by Gather).
  write_bytes(d / "ids.npy", cb::npy_header(cb::DType::i64, {big, big}) + std::string(64, '\0'));
  expect_clear_error("run " + kModel + " --input input_ids=" + (d / "ids.npy").string(), "more than 2^62 elements");
  // A header claiming 2^40 floats over 64 bytes: refused before any allocation.
  write_bytes(d / "big.npy", cb::npy_header(cb::DType::f32, {1 << 20, 1 << 20}) + std::string(64, '\0'));
  expect_clear_error("run " + (d / "transpose.onnx").string() + " --input x=" + (d / "big.npy").string(),
                     "truncated .npy data (64 bytes");
  // A header without its closing brace.
  std::string open = cb::npy_header(cb::DType::f32, {2, 2}) + std::string(16, '\0');
  open.replace(open.find(", }"), 3, ",  ");
  write_bytes(d / "open.npy", open);
  expect_clear_error("run " + (d / "transpose.onnx").string() + " --input x=" + (d / "open.npy").string(),
                     "has no closing '}'");
  // A good file still runs.
  cb::npy_write((d / "ok.npy").string(), cb::Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}));
  const Result r = run_bounded("run " + (d / "transpose.onnx").string() + " --input x=" + (d / "ok.npy").string() +
                               " -o " + (d / "out").string());
  EXPECT_EQ(r.code, 0) << r.out;
  fs::remove_all(d);
}

TEST(CliHostileInputs, FifosDevicesAndDirectoriesAreRefusedWithoutHanging) {
  const fs::path d = cb::test::temp_dir("hostile_fifo");
  const std::string fifo = (d / "pipe").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // As a model, an .npy input, a training config and a Hugging Face config.
  expect_clear_error("run " + fifo + " --tokens 1,2", "is a named pipe (FIFO)");
  expect_clear_error("inspect " + fifo, "is a named pipe (FIFO)");
  expect_clear_error("run " + kModel + " --input input_ids=" + fifo, "is a named pipe (FIFO)");
  expect_clear_error("train " + fifo + " -o " + (d / "run").string(), "is a named pipe (FIFO)");
  expect_clear_error("import-hf --config " + fifo + " --random-init -o " + (d / "x.onnx").string(), "named pipe");
  // /dev/zero never ends: it used to be read until memory ran out.
  expect_clear_error("run /dev/zero --tokens 1,2", "'/dev/zero' is a character device");
  expect_clear_error("run " + kModel + " --input input_ids=/dev/zero", "'/dev/zero' is a character device");
  expect_clear_error("train /dev/zero -o " + (d / "run").string(), "'/dev/zero' is a character device");
  // A directory where a file belongs.
  expect_clear_error("run " + kModel + " --input input_ids=" + d.string(), "is a directory");
  expect_clear_error("train " + d.string() + " -o " + (d / "run").string(), "is a directory");
  fs::remove_all(d);
}

TEST(CliHostileInputs, AbsurdHuggingFaceConfigsFailAtOnce) {
  const fs::path d = cb::test::temp_dir("hostile_hf");
  cb::Json config = cb::json_read_file(kHfGpt2 + "/config.json");
  config["n_layer"] = int64_t(1000000);
  cb::json_write_file((d / "layers.json").string(), config);
  expect_clear_error(
      "import-hf --config " + (d / "layers.json").string() + " --random-init -o " + (d / "x.onnx").string(),
      "1000000 layers is more than codebook supports");
  config = cb::json_read_file(kHfGpt2 + "/config.json");
  config["n_embd"] = int64_t(1) << 20;
  config["n_head"] = 1;
  config["vocab_size"] = int64_t(1) << 20;
  cb::json_write_file((d / "wide.json").string(), config);
  expect_clear_error(
      "import-hf --config " + (d / "wide.json").string() + " --random-init -o " + (d / "x.onnx").string(),
      "more than this machine's");
  EXPECT_FALSE(fs::exists(d / "x.onnx"));
  fs::remove_all(d);
}

TEST(CliHostileInputs, ShardIndexCannotLeaveTheModelFolder) {
  const fs::path d = cb::test::temp_dir("hostile_shard");
  fs::copy_file(kHfGpt2 + "/config.json", d / "config.json");
  cb::Json index;
  index["weight_map"]["transformer.wte.weight"] = "../../../../etc/passwd";
  cb::json_write_file((d / "model.safetensors.index.json").string(), index);
  expect_clear_error("import-hf " + d.string() + " -o " + (d / "x.onnx").string(),
                     "shard '../../../../etc/passwd' leaves the model folder");
  fs::remove_all(d);
}
