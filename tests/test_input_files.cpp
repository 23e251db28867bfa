// Hostile input files (docs/reliability.md, "Hostile input files"): the
// overflow-checked size helper (support/checked_size.h), the regular-file
// open helper (support/input_file.h), and the .npy reader and tensors built
// on them. Every case is a defect that once crashed, hung or was accepted.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "frontend/npy.h"
#include "ir/graph.h"
#include "ir/op_registry.h"
#include "ir/tensor.h"
#include "support/checked_size.h"
#include "support/error.h"
#include "support/input_file.h"

using namespace cb;
namespace fs = std::filesystem;

namespace {

// The message of the cb::Error `fn` throws; a failure when it throws nothing.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected cb::Error";
  return "";
}

#define EXPECT_ERROR_WITH(expr, text)                                                     \
  do {                                                                                    \
    const std::string msg_ = error_of([&] { (void)(expr); });                             \
    EXPECT_NE(msg_.find(text), std::string::npos) << "'" << text << "' not in: " << msg_; \
  } while (0)

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("codebook_input_files_" + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream(str(name), std::ios::binary) << bytes;
    return str(name);
  }
  std::string fifo(const std::string& name) const {
    EXPECT_EQ(mkfifo(str(name).c_str(), 0600), 0);
    return str(name);
  }

 private:
  fs::path path_;
};

// A .npy file of `shape` as the writer makes it (any shape, however absurd), then `data`.
std::string npy_with_shape(const std::vector<int64_t>& shape, const std::string& data = "", DType dtype = DType::f32) {
  return npy_header(dtype, shape) + data;
}

// `bytes` with `from` replaced by `to` of the same length, so that the header
// length stays right: malformed headers made from well-formed ones.
std::string edited(std::string bytes, const std::string& from, const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  const size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return at == std::string::npos ? bytes : bytes.replace(at, from.size(), to);
}

}  // namespace

// ---------------------------------------------------------------------------
// support/checked_size.h

TEST(CheckedSize, ProductsAndSumsWithinRange) {
  EXPECT_EQ(checked_numel({}, "x"), 1);
  EXPECT_EQ(checked_numel({2, 3, 4}, "x"), 24);
  EXPECT_EQ(checked_numel({0, 5}, "x"), 0);
  EXPECT_EQ(checked_nbytes({2, 3}, 4, "x"), 24u);
  EXPECT_EQ(checked_mul(int64_t(1) << 31, int64_t(1) << 31, "x"), int64_t(1) << 62);
  EXPECT_EQ(checked_add(kMaxCheckedSize - 1, 1, "x"), kMaxCheckedSize);
  int64_t acc = 6;
  EXPECT_TRUE(mul_size(acc, 7));
  EXPECT_EQ(acc, 42);
  EXPECT_TRUE(add_size(acc, 8));
  EXPECT_EQ(acc, 50);
}

TEST(CheckedSize, OverflowAndNegativeSizesNameWhatIsSized) {
  // 2^32 * 2^32 wraps to 0 in 64 bits: the product that once passed every check.
  EXPECT_ERROR_WITH(checked_numel({int64_t(1) << 32, int64_t(1) << 32}, "input.npy"), "input.npy");
  EXPECT_ERROR_WITH(checked_numel({int64_t(1) << 32, int64_t(1) << 32}, "x"), "more than 2^62 elements");
  // A zero elsewhere in the shape does not excuse an absurd one.
  EXPECT_ERROR_WITH(checked_numel({0, int64_t(1) << 40, int64_t(1) << 40}, "x"), "more than 2^62");
  EXPECT_ERROR_WITH(checked_numel({2, -3}, "weights"), "weights: negative dimension -3");
  EXPECT_ERROR_WITH(checked_nbytes({int64_t(1) << 61}, 8, "t"), "more than 2^62 bytes");
  EXPECT_ERROR_WITH(checked_mul(int64_t(1) << 40, int64_t(1) << 40, "layers"), "layers: size");
  EXPECT_ERROR_WITH(checked_add(kMaxCheckedSize, 1, "sum"), "overflows");
  int64_t acc = int64_t(1) << 62;
  EXPECT_FALSE(mul_size(acc, 2));
  EXPECT_EQ(acc, int64_t(1) << 62);  // unchanged
  EXPECT_FALSE(mul_size(acc, -1));
  EXPECT_FALSE(add_size(acc, 1));
}

TEST(CheckedSize, TensorsRefuseShapesWhoseSizeOverflows) {
  const int64_t big = int64_t(1) << 32;
  EXPECT_ERROR_WITH(Tensor::empty(DType::f32, {big, big, 4}), "more than 2^62");
  // 2^31 x 2^31 elements fit in int64 but not as f32 bytes.
  EXPECT_ERROR_WITH(Tensor::empty(DType::f32, {int64_t(1) << 31, int64_t(1) << 31}), "more than 2^62 bytes");
  // Wrapping a small buffer with a shape whose byte count wraps to 0.
  auto buf = buffer_allocate(16);
  EXPECT_ERROR_WITH(Tensor::wrap(DType::f32, {big, big}, buf), "more than 2^62");
  EXPECT_ERROR_WITH(Tensor::wrap(DType::f32, {8}, buf, 8), "needs 32 bytes");
  Tensor t = Tensor::zeros(DType::f32, {4});
  EXPECT_ERROR_WITH(t.reshaped({big, big, 0}), "more than 2^62");
  // An allocation that cannot succeed names the tensor.
  EXPECT_ERROR_WITH(Tensor::empty(DType::f32, {int64_t(1) << 60}), "f32[1152921504606846976]");
  EXPECT_ERROR_WITH(
      allocate_for("w.safetensors: tensor 'w'", [] { return Tensor::empty(DType::f32, {int64_t(1) << 60}); }),
      "w.safetensors: tensor 'w': out of memory allocating 4611686018427387904 bytes");
}

TEST(CheckedSize, ShapeInferenceRefusesOverflowingShapes) {
  // Broadcasting [2^32, 1] with [1, 2^32] would give 2^64 elements.
  Graph g;
  const int64_t big = int64_t(1) << 32;
  Value* a = g.add_input("a", TensorType{DType::f32, Shape::of({big, 1})});
  Value* b = g.add_input("b", TensorType{DType::f32, Shape::of({1, big})});
  Value* y = g.add_value("y");
  Node* n = g.add_node("Add", {a, b}, {y}, {}, "add");
  std::vector<const TensorType*> types{&a->type, &b->type};
  EXPECT_ERROR_WITH(infer_node(*n, types, {nullptr, nullptr}), "more than 2^62 elements");
  EXPECT_ERROR_WITH(infer_node(*n, types, {nullptr, nullptr}), "add");
}

// ---------------------------------------------------------------------------
// support/input_file.h

TEST(InputFile, ReadsRegularFilesWithTheirSize) {
  TempDir d;
  const std::string p = d.write("a.txt", "hello");
  EXPECT_EQ(read_input_file(p, "text"), "hello");
  EXPECT_EQ(check_input_file(p, "text"), 5u);
  EXPECT_EQ(InputFile::open(p).size(), 5u);
  EXPECT_EQ(read_input_file(d.write("empty", ""), "text"), "");
  EXPECT_ERROR_WITH(read_input_file(d.str("missing"), "config file"), "cannot open config file '");
  EXPECT_ERROR_WITH(read_input_file(d.str("missing"), "config file"), "No such file");
}

TEST(InputFile, RefusesFifosDevicesAndDirectoriesWithoutBlocking) {
  TempDir d;
  const std::string fifo = d.fifo("pipe");
  const auto start = std::chrono::steady_clock::now();
  // Opening a FIFO for reading would wait for a writer forever.
  EXPECT_ERROR_WITH(read_input_file(fifo, "model"), "model '" + fifo + "' is a named pipe (FIFO)");
  EXPECT_ERROR_WITH(check_input_file(fifo, "model"), "named pipe");
  EXPECT_ERROR_WITH(MappedFile::open(fifo), "named pipe");
  // /dev/zero never ends: it would be read until memory runs out.
  EXPECT_ERROR_WITH(read_input_file("/dev/zero", "--input"), "'/dev/zero' is a character device");
  EXPECT_ERROR_WITH(MappedFile::open("/dev/zero"), "character device");
  EXPECT_ERROR_WITH(read_input_file(d.str(""), "config file"), "is a directory");
  EXPECT_ERROR_WITH(MappedFile::open(d.str("")), "is a directory");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(InputFile, FilesLargerThanMemoryAreRefusedBeforeReading) {
  TempDir d;
  const std::string p = d.write("sparse.npy", "");
  std::error_code ec;
  fs::resize_file(p, physical_memory_bytes() + (uint64_t(1) << 30), ec);  // sparse: no disk used
  if (ec) GTEST_SKIP() << "no sparse files here: " << ec.message();
  EXPECT_ERROR_WITH(read_input_file(p, "--input"), "out of memory reading '" + p + "'");
  EXPECT_ERROR_WITH(npy_read(p), "more than the machine's");
}

TEST(InputFile, NamesReadFromFilesMustStayInsideTheirFolder) {
  EXPECT_NO_THROW(check_name_inside_folder("model-00001.safetensors", "shard", "the model folder"));
  EXPECT_NO_THROW(check_name_inside_folder("sub/dir/w.bin", "shard", "the model folder"));
  EXPECT_NO_THROW(check_name_inside_folder("..hidden", "shard", "the model folder"));
  EXPECT_ERROR_WITH(check_name_inside_folder("../../../../etc/passwd", "shard", "the model folder"),
                    "shard '../../../../etc/passwd' leaves the model folder");
  EXPECT_ERROR_WITH(check_name_inside_folder("a/../../b", "shard", "the model folder"), "leaves");
  EXPECT_ERROR_WITH(check_name_inside_folder("a/..", "shard", "the model folder"), "leaves");
  EXPECT_ERROR_WITH(check_name_inside_folder("/etc/passwd", "shard", "the model folder"), "absolute path");
  EXPECT_ERROR_WITH(check_name_inside_folder("", "shard", "the model folder"), "shard is empty");
}

// ---------------------------------------------------------------------------
// .npy

TEST(NpyHostile, ShapeWhoseProductWrapsIsRefused) {
  // (2^32, 2^32): the element count wraps to 0, so 0 data bytes "suffice".
  const int64_t big = int64_t(1) << 32;
  EXPECT_ERROR_WITH(npy_parse(npy_with_shape({big, big}), "wrap.npy"), "wrap.npy");
  EXPECT_ERROR_WITH(npy_parse(npy_with_shape({big, big}), "wrap.npy"), "more than 2^62");
  // 2^62 x 4 bytes wraps to 0 bytes.
  EXPECT_ERROR_WITH(npy_parse(npy_with_shape({int64_t(1) << 62}), "bytes.npy"), "more than 2^62 bytes");
  const std::string e18 = npy_with_shape({1000000000000000000});
  EXPECT_ERROR_WITH(npy_parse(edited(e18, "1000000000000000000,", "99999999999999999999"), "huge.npy"),
                    "bad dimension '99999999999999999999'");
  EXPECT_ERROR_WITH(npy_parse(edited(npy_with_shape({1}), "(1,)", "(-1)"), "neg.npy"), "bad dimension '-1'");
}

TEST(NpyHostile, ClaimedSizeIsCheckedAgainstTheFileBeforeAllocating) {
  // A header claiming 2^40 floats and four bytes of data: refused without a 4 TB allocation.
  EXPECT_ERROR_WITH(npy_parse(npy_with_shape({int64_t(1) << 40}, "abcd"), "big.npy"),
                    "big.npy: truncated .npy data (4 bytes");
  EXPECT_ERROR_WITH(npy_parse(npy_with_shape({3}, std::string(8, '\0')), "short.npy"), "which needs 12");
  Tensor ok = npy_parse(npy_with_shape({2}, std::string(8, '\0')), "ok.npy");
  EXPECT_EQ(ok.dims(), (std::vector<int64_t>{2}));
}

TEST(NpyHostile, MalformedHeadersAreErrors) {
  const std::string good = npy_with_shape({2}, std::string(8, '\0'));
  EXPECT_NO_THROW(npy_parse(good, "good.npy"));
  // No closing brace.
  EXPECT_ERROR_WITH(npy_parse(edited(good, ", }", ",  "), "open.npy"), "open.npy: .npy header has no closing '}'");
  EXPECT_ERROR_WITH(npy_parse(edited(good, "{'descr'", " 'descr'"), "x.npy"), "does not start with '{'");
  // A shape that is not a tuple.
  EXPECT_ERROR_WITH(npy_parse(edited(good, "(2,)", " 7  "), "x.npy"), "must be a tuple");
  // Bool bytes other than 0 and 1 are read as true, never kept as invalid bools.
  Tensor b = npy_parse(npy_with_shape({3}, std::string("\0\2\1", 3), DType::boolean), "b.npy");
  EXPECT_EQ(static_cast<const uint8_t*>(b.raw())[1], 1);
}

TEST(NpyHostile, NonRegularFilesAreRefused) {
  TempDir d;
  EXPECT_ERROR_WITH(npy_read(d.fifo("in.npy")), "named pipe");
  EXPECT_ERROR_WITH(npy_read("/dev/zero"), "character device");
  EXPECT_ERROR_WITH(npy_read(d.str("")), "directory");
}
